"""Run one generation and report it, as events, to the consumer that asked for it.

The same function runs on a thread of the web process (embedded default) and inside a
Celery task on a GPU worker (production); only the relay's event loop differs.
"""

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from django.db import close_old_connections

from audit.context import RequestContext, request_context_bound
from audit.models import AuditEvent
from audit.services import audit_event_record
from inference.cancellation import generation_cancel_requested
from inference.engines.base import ChatMessage, GenerationParams
from inference.engines.loader import engine_for_version
from inference.engines.local import PromptTooLong
from inference.manifest import ManifestMismatch, UnsafeWeights
from inference.models import ModelVersion
from inference.relay import ChannelRelay, ReaderGone

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GenerationJob:
    """Everything a worker needs, as JSON-safe values (Celery serialises it)."""

    generation_id: str
    client_id: str
    reply_channel: str
    version_id: int
    messages: list[dict[str, str]]
    params: dict[str, Any] = field(default_factory=dict)
    request_id: str = ""

    def to_payload(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> "GenerationJob":
        return cls(**payload)


def _failed(job: GenerationJob, *, code: str, message: str) -> dict[str, Any]:
    return {
        "type": "generation.failed",
        "generation_id": job.generation_id,
        "client_id": job.client_id,
        "code": code,
        "message": message,
    }


def generation_run(*, job: GenerationJob, relay: ChannelRelay) -> None:
    """Generate, sending `generation.token` per token then `generation.finished` (or `.failed`)."""
    close_old_connections()
    try:
        # Audit rows written on the worker carry the request id of the chat that caused them.
        with request_context_bound(RequestContext(request_id=job.request_id)):
            _generate(job=job, relay=relay)
    except ReaderGone:
        # Nobody is listening any more; the consumer audits a vanished client itself.
        logger.info("generation %s stopped: its reader is gone", job.generation_id)
    except Exception:
        logger.exception("generation %s failed", job.generation_id)
        try:
            relay.send(_failed(job, code="unavailable", message="The model failed while generating."))
        except ReaderGone:
            logger.info("generation %s: could not report the failure, its reader is gone", job.generation_id)
    finally:
        close_old_connections()


def _generate(*, job: GenerationJob, relay: ChannelRelay) -> None:
    version = ModelVersion.objects.select_related("model").get(pk=job.version_id)
    try:
        engine = engine_for_version(version=version)
    except ManifestMismatch as exc:
        # Refusing to load tampered weights is a security event, recorded like one.
        audit_event_record(
            action="model.version.load_refused",
            actor_display="system",
            actor_kind=AuditEvent.ActorKind.SYSTEM,
            target=version,
            outcome=AuditEvent.Outcome.DENIED,
            metadata={"reason": str(exc), "generation_id": job.generation_id},
        )
        message = (
            "The model's weights are in a format this version may not load."
            if isinstance(exc, UnsafeWeights)
            else "The model's files failed verification."
        )
        relay.send(_failed(job, code="unavailable", message=message))
        return

    index = 0

    def on_token(text: str) -> None:
        nonlocal index
        relay.send(
            {
                "type": "generation.token",
                "generation_id": job.generation_id,
                "client_id": job.client_id,
                "index": index,
                "text": text,
            }
        )
        index += 1

    try:
        result = engine.generate_stream(
            messages=[ChatMessage(**message) for message in job.messages],
            params=GenerationParams(**{**job.params, "stop": tuple(job.params.get("stop", ()))}),
            on_token=on_token,
            should_stop=lambda: generation_cancel_requested(generation_id=job.generation_id),
        )
    except PromptTooLong as exc:
        relay.send(_failed(job, code="invalid", message=str(exc)))
        return
    relay.send(
        {
            "type": "generation.finished",
            "generation_id": job.generation_id,
            "client_id": job.client_id,
            "finish_reason": result.finish_reason.value,
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
        }
    )

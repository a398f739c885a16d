"""Run one generation and report it, as events, to the consumer that asked for it.

The same function runs on a thread of the web process (embedded default) and inside a
Celery task on a GPU worker (production); the relay (`inference.relay`) takes its events to
the request waiting for them either way.
"""

import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from django.conf import settings
from django.db import close_old_connections, transaction

from accounts.models import User
from accounts.quotas.charge import Charge
from accounts.services.quotas import QuotaAdmission, quota_release, quota_settle
from audit.context import RequestContext, request_context_bound
from audit.models import AuditEvent
from gatehouse.metrics import (
    ACTIVE_STREAMS,
    GENERATION_LATENCY,
    GENERATIONS,
    QUEUE_WAIT,
    TIME_TO_FIRST_TOKEN,
    TOKENS_GENERATED,
)
from guardrails.stream import stored_reply
from inference.cancellation import generation_cancel_watch
from inference.engines.base import ChatMessage, Engine, GenerationParams, GenerationResult, TokenLogprob
from inference.engines.constraints import ResponseFormatUnsupported
from inference.engines.embedding import EmbeddingRefused, LocalEmbeddingEngine
from inference.engines.loader import EngineTooLarge, UpstreamRefused, engine_for_version
from inference.engines.local import PromptTooLong
from inference.engines.remote import RemoteUnavailable
from inference.manifest import ManifestMismatch, UnsafeWeights
from inference.models import ModelVersion
from inference.relay import EventSender, ReaderGone
from inference.selectors import model_version_for_run
from inference.services.chat import chat_prompt_digest, chat_record_outcome, chat_record_start
from inference.services.conversations import conversation_exchange_record
from inference.services.registry import model_version_load_refused_record
from spend.money import Prices

logger = logging.getLogger(__name__)

# The test hook GATEHOUSE_TEST_HOLD_MODELS: how long a held generation waits for its cancel.
HOLD_LIMIT_SECONDS = 30.0


@dataclass(frozen=True)
class GenerationJob:
    """Everything a worker needs, as JSON-safe values (Celery serialises it)."""

    generation_id: str
    client_id: str
    reply_channel: str
    version_id: int
    model_name: str
    messages: list[dict[str, Any]]
    user_id: int
    api_key_id: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    request_id: str = ""
    client_ip: str | None = None
    # Wall-clock time (epoch seconds) the web tier queued the job: latency includes the queue.
    enqueued_at: float = 0.0
    # Which door the request came through: "websocket" or "api" (/v1/chat/completions).
    channel: str = "websocket"
    # Where the exchange is stored (None: not stored), and which of `messages` are new in
    # this request (the ones before are the conversation's stored history).
    conversation_id: str | None = None
    new_messages_from: int = 0
    # The conversation was named for this request (no stored history): its exchange creates
    # it without looking for it first.
    conversation_new: bool = False
    # The quota reservations this generation settles when it ends (QuotaAdmission payload).
    quota: dict[str, Any] | None = None
    # The version is a remote (OpenAI-compatible) server: see GATEHOUSE_REMOTE_GENERATION.
    remote: bool = False
    # The model asked for, where this job is its fallback (inference.chat.fallback).
    fallback_from: str | None = None
    # What its guardrails redact from the answer (`inference.chat.guarding.answer_redaction`):
    # the door redacts what it sends, the stored reply is redacted where it is stored.
    redaction: dict[str, Any] | None = None
    # Test hook (GATEHOUSE_TEST_HOLD_MODELS): decided where the job is made, from that
    # process's settings, and obeyed wherever it runs.
    hold_until_cancelled: bool | None = None
    # How many other chats for the model the web process was still admitting when it queued
    # this one: an idle model waits a moment for them (`inference.chat.arrivals`).
    arriving_with: int = 0

    def __post_init__(self) -> None:
        if self.hold_until_cancelled is None:
            held = self.model_name in settings.GATEHOUSE_TEST_HOLD_MODELS
            object.__setattr__(self, "hold_until_cancelled", held)

    def to_payload(self) -> dict[str, Any]:
        """JSON-safe; without `fallback_from`, `redaction`, `conversation_new` and `arriving_with`
        where unset, so that the previous releases' workers (which do not know them) still run
        every other job."""
        payload = asdict(self)
        for added in ("fallback_from", "redaction", "conversation_new", "arriving_with"):
            if payload[added] in (None, False, 0):
                del payload[added]
        return payload

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> "GenerationJob":
        return cls(**payload)


def _charge(result: GenerationResult) -> Charge:
    """What a generation that ran to its end is charged: its prompt and its answer."""
    return Charge(prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens)


def _failed(job: GenerationJob, *, code: str, message: str, detail_code: str | None = None) -> dict[str, Any]:
    """`code` is the websocket protocol's; `detail_code`, a finer one, what /v1 answers."""
    event = {
        "type": "generation.failed",
        "generation_id": job.generation_id,
        "client_id": job.client_id,
        "code": code,
        "message": message,
    }
    if detail_code is not None:
        event["detail_code"] = detail_code
    return event


class _Outcome:
    """What the audit record of one generation says, filled in as it runs."""

    def __init__(self, job: GenerationJob) -> None:
        self.job = job
        self.first_token_at: float | None = None
        self.recorded = False
        self.delivered = 0
        self.quota_ended = False
        # The version generating, with its model, once loaded (its record needs both).
        self.version: ModelVersion | None = None
        # Its audit record's first half, made after the first tokens left (`record_start`).
        self.record_started: AuditEvent | None = None
        self._record_start_tried = False

    def record_start(self) -> None:
        """Begin the audit record while the model answers: who ran which version, from where.
        The end then only finishes it, in fewer round trips (where eight streams end together
        in one worker, each round trip waits its turn behind the batch's own work).

        Once. A failure is logged and the end builds the record whole, as it would have.
        """
        if self._record_start_tried or self.version is None:
            return
        self._record_start_tried = True
        try:
            self.record_started = chat_record_start(
                user_id=self.job.user_id, api_key_id=self.job.api_key_id, version=self.version
            )
        except Exception:  # the end builds the record whole
            logger.exception("generation %s: its record could not be begun early", self.job.generation_id)

    def quota_end(self, *, charge: Charge | None) -> None:
        """Settle the quota reservations with what was used, or release them (None); once.

        A store that cannot be reached here does not fail a finished generation: the
        settlement is retried in the background until it is back (accounts quota_settle).
        """
        if self.quota_ended or not self.job.quota:
            return
        self.quota_ended = True
        admission = QuotaAdmission.from_payload(self.job.quota)
        if charge is None:
            quota_release(admission=admission)
        else:
            quota_settle(admission=admission, charge=charge)

    def fail(self, *, code: str, reason: str | None = None, prompt_tokens: int = 0) -> None:
        """End as failed: what was used is charged (the prompt, where the model read it, and what
        the client was sent), and the record says so."""
        self.quota_end(charge=Charge(prompt_tokens=prompt_tokens, completion_tokens=self.delivered))
        details: dict[str, object] = {"code": code, "completion_tokens": self.delivered}
        if prompt_tokens:
            details["prompt_tokens"] = prompt_tokens
        if reason is not None:
            details["reason"] = reason
        self.record(failed=True, **details)

    def record(self, *, failed: bool, **details: object) -> None:
        """Write the generation's one audit record; later calls (a failed final send) do nothing."""
        if self.recorded:
            return
        self.recorded = True
        try:
            self._record(failed=failed, **details)
        except (ModelVersion.DoesNotExist, User.DoesNotExist):
            # Versions are protected from deletion and users are deactivated, not deleted;
            # only a wiped database (a test run ending) gets here.
            logger.warning("generation %s: nothing to attribute its record to", self.job.generation_id)

    def _record(self, *, failed: bool, **details: object) -> None:
        now = time.time()
        started = self.job.enqueued_at or now
        self._observe(failed=failed, now=now, started=started, details=details)
        chat_record_outcome(
            user_id=self.job.user_id,
            api_key_id=self.job.api_key_id,
            version_id=self.job.version_id,
            failed=failed,
            channel=self.job.channel,
            version=self.version,
            prices=Prices.from_payload((self.job.quota or {}).get("prices")),
            started=self.record_started,
            metadata={
                "client_id": self.job.client_id,
                "generation_id": self.job.generation_id,
                "prompt_sha256": chat_prompt_digest(messages=self.job.messages),
                "latency_ms": round((now - started) * 1000, 1),
                "time_to_first_token_ms": (
                    round((self.first_token_at - started) * 1000, 1) if self.first_token_at else None
                ),
                **({"fallback_from": self.job.fallback_from} if self.job.fallback_from else {}),
                **details,
            },
        )

    def _observe(self, *, failed: bool, now: float, started: float, details: dict[str, object]) -> None:
        model, channel = self.job.model_name, self.job.channel
        outcome = "failed" if failed else str(details.get("finish_reason", "stop"))
        GENERATIONS.labels(model=model, channel=channel, outcome=outcome).inc()
        completion = details.get("completion_tokens", self.delivered)
        TOKENS_GENERATED.labels(model=model, channel=channel).inc(
            completion if isinstance(completion, int) else 0
        )
        GENERATION_LATENCY.labels(model=model).observe(now - started)
        if self.first_token_at is not None:
            TIME_TO_FIRST_TOKEN.labels(model=model).observe(self.first_token_at - started)


def generation_run(*, job: GenerationJob, relay: EventSender) -> None:
    """Generate, sending `generation.tokens` (one or more tokens each) then `generation.finished` (or `.failed`).

    The audit record is written here, before the final event is sent.
    """
    close_old_connections()
    outcome = _Outcome(job)
    context = RequestContext(request_id=job.request_id, client_ip=job.client_ip)
    if job.enqueued_at:
        QUEUE_WAIT.labels(model=job.model_name).observe(max(0.0, time.time() - job.enqueued_at))
    streams = ACTIVE_STREAMS.labels(model=job.model_name)
    streams.inc()
    try:
        with request_context_bound(context):
            _generate(job=job, relay=relay, outcome=outcome)
    except ReaderGone:
        # Nobody is listening any more: the client left or stopped reading. What it was
        # sent is charged (the prompt's count is not known on this path).
        logger.info("generation %s stopped: its reader is gone", job.generation_id)
        outcome.quota_end(charge=Charge(completion_tokens=outcome.delivered))
        with request_context_bound(context):
            outcome.record(
                failed=False,
                finish_reason="cancelled",
                reason="client gone",
                completion_tokens=outcome.delivered,
            )
    except Exception:
        logger.exception("generation %s failed", job.generation_id)
        with request_context_bound(context):
            outcome.fail(code="unavailable")
        try:
            relay.send(_failed(job, code="unavailable", message="The model failed while generating."))
        except ReaderGone:
            logger.info("generation %s: could not report the failure, its reader is gone", job.generation_id)
    finally:
        # Every path that did not settle (one not foreseen) gives it all back.
        outcome.quota_end(charge=None)
        streams.dec()
        close_old_connections()


def _embed(
    *, job: GenerationJob, engine: LocalEmbeddingEngine, relay: EventSender, outcome: _Outcome
) -> None:
    """An embedding job: every message's text in, one vector each out (`generation.embedded`).

    Recorded and settled before the vectors are sent, like a generation's end; the inputs'
    tokens are what is charged.
    """
    try:
        embeddings = engine.embed(
            [message["content"] for message in job.messages], dimensions=job.params.get("dimensions")
        )
    except EmbeddingRefused as refused:
        outcome.fail(code="invalid", reason=str(refused))
        relay.send(_failed(job, code="invalid", message=f"The input cannot be embedded: {refused}."))
        return
    usage = {"prompt_tokens": embeddings.prompt_tokens, "completion_tokens": 0}
    outcome.record(failed=False, finish_reason="stop", inputs=len(job.messages), **usage)
    outcome.quota_end(charge=Charge(prompt_tokens=embeddings.prompt_tokens))
    relay.send(
        {
            "type": "generation.embedded",
            "generation_id": job.generation_id,
            "client_id": job.client_id,
            "vectors": embeddings.vectors,
            **usage,
        }
    )


def _held_until_cancelled(job: GenerationJob, cancelled: threading.Event) -> None:
    """The test hook: once, after the first tokens, wait for the cancel (bounded), then go on."""
    if not cancelled.wait(HOLD_LIMIT_SECONDS):
        logger.warning(
            "generation %s: held for %.0fs without a cancel", job.generation_id, HOLD_LIMIT_SECONDS
        )


class _TokenHops:
    """Hands a generation's token hops to the relay, and notices when nobody reads any more."""

    def __init__(
        self, *, job: GenerationJob, relay: EventSender, outcome: _Outcome, cancelled: threading.Event
    ) -> None:
        self._job, self._relay, self._outcome = job, relay, outcome
        # Set by the process's cancel watcher once the generation's cancel flag is raised.
        self._cancelled = cancelled
        self.reply: list[str] = []
        self._held = bool(job.hold_until_cancelled)
        # Set when the relay says nobody reads any more: the model stops as if cancelled, so
        # the record still counts the prompt it read.
        self.reader_gone = False

    def __call__(self, texts: list[str], logprobs: list[TokenLogprob] | None = None, /) -> None:
        """One hop (`on_token`); an empty `texts` is a heartbeat, sent on so the reader knows
        this worker is alive. The tokens' log probabilities go with their texts where asked."""
        if self.reader_gone:
            return
        job, outcome = self._job, self._outcome
        if texts and outcome.first_token_at is None:
            outcome.first_token_at = time.time()
        event = {
            "type": "generation.tokens",
            "generation_id": job.generation_id,
            "client_id": job.client_id,
            "index": outcome.delivered,
            "texts": texts,
        }
        if logprobs is not None:
            event["logprobs"] = logprobs
        try:
            self._relay.send(event)
        except ReaderGone:
            logger.info("generation %s stopping: its reader is gone", job.generation_id)
            self.reader_gone = True
            return
        if job.conversation_id:
            self.reply.extend(texts)
        outcome.delivered += len(texts)
        if texts:
            outcome.record_start()  # once, after the first tokens left: it does not delay them
        if self._held and texts:
            self._held = False
            _held_until_cancelled(job, self._cancelled)

    def should_stop(self) -> bool:
        return self.reader_gone or self._cancelled.is_set()


def _engine_or_refusal(
    *, job: GenerationJob, relay: EventSender, outcome: _Outcome
) -> Engine | LocalEmbeddingEngine | None:
    """The version's engine; None once a refusal to load it is recorded and sent."""
    version = outcome.version = model_version_for_run(version_id=job.version_id)
    try:
        return engine_for_version(version=version)
    except EngineTooLarge as exc:
        logger.error("generation %s: %s", job.generation_id, exc)
        outcome.fail(code="unavailable", reason="model over the memory budget")
        relay.send(
            _failed(job, code="unavailable", message="The model does not fit this server's memory budget.")
        )
    except (ManifestMismatch, UpstreamRefused) as exc:
        model_version_load_refused_record(version=version, reason=str(exc), generation_id=job.generation_id)
        outcome.fail(code="unavailable")
        if isinstance(exc, UpstreamRefused):
            message = "The model's upstream registration is not allowed on this server."
        elif isinstance(exc, UnsafeWeights):
            message = "The model's weights are in a format this version may not load."
        else:
            message = "The model's files failed verification."
        relay.send(_failed(job, code="unavailable", message=message))
    return None


def _generate(*, job: GenerationJob, relay: EventSender, outcome: _Outcome) -> None:
    engine = _engine_or_refusal(job=job, relay=relay, outcome=outcome)
    if engine is None:
        return
    if isinstance(engine, LocalEmbeddingEngine):
        _embed(job=job, engine=engine, relay=relay, outcome=outcome)
        return
    try:
        with generation_cancel_watch(generation_id=job.generation_id) as cancelled:
            hops = _TokenHops(job=job, relay=relay, outcome=outcome, cancelled=cancelled)
            result = engine.generate_stream(
                messages=[ChatMessage(**message) for message in job.messages],
                params=GenerationParams(**{**job.params, "stop": tuple(job.params.get("stop", ()))}),
                on_token=hops,
                should_stop=hops.should_stop,
                arriving_with=job.arriving_with,
            )
    except RemoteUnavailable as exc:
        logger.warning("generation %s: %s", job.generation_id, exc)
        outcome.fail(code="unavailable", reason=str(exc))
        relay.send(
            _failed(
                job, code="unavailable", message="The model's server is not answering; try again shortly."
            )
        )
        return
    except ResponseFormatUnsupported as exc:
        outcome.fail(code="invalid", reason=str(exc))
        message = f"The response format cannot be used with this model: {exc}."
        relay.send(_failed(job, code="invalid", message=message))
        return
    except PromptTooLong as exc:
        # Tokenizing the prompt was work done for the caller: what it counted is charged.
        outcome.fail(code="invalid", reason="context_length_exceeded", prompt_tokens=exc.prompt_tokens)
        relay.send(_failed(job, code="invalid", message=str(exc), detail_code="context_length_exceeded"))
        return
    usage = {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens}
    if hops.reader_gone:
        outcome.quota_end(charge=_charge(result))
        outcome.record(failed=False, finish_reason="cancelled", reason="client gone", **usage)
        return
    # The exchange and its audit record commit together (one commit, not one per statement),
    # or neither does: if storing the exchange fails, the generation is recorded as failed
    # instead; if the record cannot be written, no reply is kept that the trail lacks.
    with transaction.atomic():
        if job.conversation_id:
            conversation_exchange_record(
                conversation_id=job.conversation_id,
                conversation_new=job.conversation_new,
                owner_id=job.user_id,
                version_id=job.version_id,
                channel=job.channel,
                new_messages=job.messages[job.new_messages_from :],
                reply=stored_reply("".join(hops.reply), job.redaction),
                finish_reason=result.finish_reason.value,
                model_id=outcome.version.model_id if outcome.version else None,
                asked_model=job.fallback_from,
                **usage,
            )
        outcome.record(failed=False, finish_reason=result.finish_reason.value, **usage)
    # Settled before the client hears `done`, so what it reads next is already up to date.
    outcome.quota_end(charge=_charge(result))
    relay.send(
        {
            "type": "generation.finished",
            "generation_id": job.generation_id,
            "client_id": job.client_id,
            "finish_reason": result.finish_reason.value,
            **usage,
        }
    )

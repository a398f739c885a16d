"""The outcome: the one place an in-process chat's end is recorded and what it held given back.

First the record, durably, in one database transaction (the audit event, and the exchange
where conversations are stored; on PostgreSQL an event alone is one INSERT from the event
loop, `audit.appender`); then, in one round trip, the tokens charged, the stream
leases and the chat slot freed and the usage record buffered (accounts.services.chat_quotas).
Only then is the client told the chat ended: what it reads next is already up to date.

A remote chat starts its record while its model answers (`chat_record_start_soon`): who
ran which version from where, and the prompt's digest, are known from the start, so the end
pays only for what happened, and the record's INSERT goes out sooner.

A chat run by a worker (a local model) records itself there (`inference.generation`).
"""

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import SynchronousOnlyOperation
from django.db import transaction

from accounts.quotas.charge import Charge
from accounts.services.chat_quotas import quota_chat_finish_async
from audit.appender import audit_appends_direct, audit_event_append_async
from audit.context import RequestContext, request_context_bound
from audit.models import AuditEvent
from audit.services import audit_event_insert
from gatehouse.database_calls import database_sync
from gatehouse.metrics import GENERATION_LATENCY, GENERATIONS, TIME_TO_FIRST_TOKEN, TOKENS_GENERATED
from guardrails.stream import answer_redaction, stored_reply
from inference.chat.admission import ChatAdmitted
from inference.engines.remote_deployments import Attempt
from inference.services.chat import (
    chat_outcome_event,
    chat_outcome_event_finish,
    chat_outcome_event_start,
    chat_prompt_digest,
    chat_usage_row,
)
from inference.services.conversations import conversation_exchange_record
from spend.money import Prices

logger = logging.getLogger(__name__)


@dataclass
class ChatProgress:
    """What a running chat has done so far: filled in as it runs, read by its outcome."""

    delivered: int = 0
    first_token_at: float | None = None
    reply: list[str] | None = None
    # A remote version's tries: which upstream, and how each went.
    attempts: list[Attempt] = field(default_factory=list)
    # Made ahead while the model answers (`chat_record_start_soon`); the end makes what is not.
    prompt_sha256: str | None = None
    record_started: AuditEvent | None = None


def chat_record_start_soon(admitted: ChatAdmitted, progress: ChatProgress) -> None:
    """On the event loop's next turn (the caller is then waiting for its upstream), make
    what the chat's record holds whatever the outcome: its prompt's digest and the started
    event (`chat_outcome_event_start`), kept in `progress` for `chat_outcome`. Where that needs
    the database (the caller's audit subject, not cached yet) the end makes it, as it would."""
    asyncio.get_running_loop().call_soon(_record_start, admitted, progress)


def _record_start(admitted: ChatAdmitted, progress: ChatProgress) -> None:
    version = admitted.plan.version
    try:
        progress.prompt_sha256 = chat_prompt_digest(messages=admitted.messages)
        if version is not None:
            with request_context_bound(_record_context(admitted)):
                started = chat_outcome_event_start(
                    user=admitted.user, api_key=admitted.api_key, version=version
                )
            progress.record_started = started
    except SynchronousOnlyOperation:
        pass  # not cached yet: the end loads it
    except Exception:
        # Nothing is lost: the end builds the record whole, as without a start.
        logger.exception("a chat's record could not be started ahead; its end builds it")


# Outcomes under way, kept until done: the loop holds tasks only weakly.
_recording: set["asyncio.Task[None]"] = set()


async def chat_outcome(
    *,
    admitted: ChatAdmitted,
    progress: ChatProgress,
    failed: bool,
    charge: Charge,
    details: dict[str, Any],
) -> None:
    """Record how the chat ended, then settle what it held, charging `charge` (its tokens, and
    their cost at the prices it was admitted at). `details` join the record's metadata
    (finish_reason and usage, or code and reason).

    Runs to its end even when its caller is cancelled meanwhile (the client left, or another
    choice of the request failed): a record half written or a hold never given back would be
    an audit gap or a quota leak. The caller then goes on at once, and this finishes behind it.
    """
    task = asyncio.ensure_future(
        _outcome(
            admitted=admitted,
            progress=progress,
            failed=failed,
            charge=charge,
            details=details,
        )
    )
    _recording.add(task)
    task.add_done_callback(_recording.discard)
    await asyncio.shield(task)


async def _outcome(
    *,
    admitted: ChatAdmitted,
    progress: ChatProgress,
    failed: bool,
    charge: Charge,
    details: dict[str, Any],
) -> None:
    now = time.time()
    started = admitted.admitted_at
    metadata: dict[str, object] = {
        "client_id": admitted.request_id[:64],
        "generation_id": admitted.generation_id,
        "prompt_sha256": progress.prompt_sha256 or chat_prompt_digest(messages=admitted.messages),
        "latency_ms": round((now - started) * 1000, 1),
        "time_to_first_token_ms": (
            round((progress.first_token_at - started) * 1000, 1) if progress.first_token_at else None
        ),
        **({"fallback_from": admitted.fallback_from} if admitted.fallback_from else {}),
        **details,
    }
    if progress.attempts:
        # Which upstream served (or was tried last), and every try where there was more than one.
        metadata["upstream"] = progress.attempts[-1].upstream
        if len(progress.attempts) > 1:
            metadata["attempts"] = [attempt.as_record() for attempt in progress.attempts]
    _observe(admitted, progress=progress, failed=failed, details=details, elapsed=now - started)
    context = _record_context(admitted)
    with request_context_bound(context):
        usage = chat_usage_row(
            user_id=admitted.user.pk,
            api_key_id=admitted.api_key.pk if admitted.api_key else None,
            version_id=admitted.plan.version_id,
            channel=admitted.channel,
            metadata=metadata,
            failed=failed,
            cost=Prices.from_payload(admitted.hold.quota.prices).cost(
                prompt_tokens=charge.prompt_tokens, completion_tokens=charge.completion_tokens
            ),
        )
    # The record and the settlement go to different stores: both at once, and both are done
    # before the caller tells the client the chat ended.
    await asyncio.gather(
        _record(admitted, progress=progress, failed=failed, metadata=metadata, context=context),
        quota_chat_finish_async(hold=admitted.hold, charge=charge, usage=usage),
    )


async def _record(
    admitted: ChatAdmitted,
    *,
    progress: ChatProgress,
    failed: bool,
    metadata: dict[str, object],
    context: RequestContext,
) -> None:
    """The record: straight from the event loop where it can be (`audit.appender`: no stored
    exchange to write with it, and nothing to read for it), else in a thread's transaction."""
    if audit_appends_direct() and not _exchange_stored(admitted, progress=progress, failed=failed):
        try:
            with request_context_bound(context):
                event = _outcome_event(admitted, progress=progress, failed=failed, metadata=metadata)
        except SynchronousOnlyOperation:
            pass  # it needs the database (the caller's audit subject, not cached yet): a thread's way
        else:
            await audit_event_append_async(event=event)
            return
    await database_sync(_record_in_transaction)(
        admitted, progress=progress, failed=failed, metadata=metadata, context=context
    )


def _record_context(admitted: ChatAdmitted) -> RequestContext:
    """The request context the chat's record is made in (its request id and client address)."""
    return RequestContext(request_id=admitted.request_id, client_ip=admitted.client_ip)


def _outcome_event(
    admitted: ChatAdmitted, *, progress: ChatProgress, failed: bool, metadata: dict[str, object]
) -> AuditEvent:
    version = admitted.plan.version
    assert version is not None  # noqa: S101 - an in-process chat has its version at hand
    started, progress.record_started = progress.record_started, None  # used once
    if started is not None:
        return chat_outcome_event_finish(
            started, version=version, failed=failed, channel=admitted.channel, metadata=metadata
        )
    return chat_outcome_event(
        user=admitted.user,
        api_key=admitted.api_key,
        version=version,
        failed=failed,
        channel=admitted.channel,
        metadata=metadata,
    )


def _exchange_stored(admitted: ChatAdmitted, *, progress: ChatProgress, failed: bool) -> bool:
    return bool(admitted.conversation_id) and not failed and progress.reply is not None


def _record_in_transaction(
    admitted: ChatAdmitted,
    *,
    progress: ChatProgress,
    failed: bool,
    metadata: dict[str, object],
    context: RequestContext,
) -> None:
    with request_context_bound(context), transaction.atomic():
        if admitted.conversation_id and not failed and progress.reply is not None:
            conversation_exchange_record(
                conversation_id=admitted.conversation_id,
                conversation_new=True,  # named for this request (ChatAdmitted.conversation_id)
                owner_id=admitted.user.pk,
                version_id=admitted.plan.version_id,
                channel=admitted.channel,
                new_messages=admitted.messages,
                reply=stored_reply("".join(progress.reply), answer_redaction(admitted.guard)),
                finish_reason=str(metadata.get("finish_reason", "stop")),
                prompt_tokens=int(str(metadata.get("prompt_tokens") or 0)),
                completion_tokens=int(str(metadata.get("completion_tokens") or 0)),
                model_id=admitted.plan.version.model_id if admitted.plan.version else None,
                asked_model=admitted.fallback_from,
            )
        audit_event_insert(
            event=_outcome_event(admitted, progress=progress, failed=failed, metadata=metadata)
        )


def _observe(
    admitted: ChatAdmitted, *, progress: ChatProgress, failed: bool, details: dict[str, Any], elapsed: float
) -> None:
    model, channel = admitted.plan.model_name, admitted.channel
    outcome = "failed" if failed else str(details.get("finish_reason", "stop"))
    GENERATIONS.labels(model=model, channel=channel, outcome=outcome).inc()
    completion = details.get("completion_tokens", progress.delivered)
    TOKENS_GENERATED.labels(model=model, channel=channel).inc(
        completion if isinstance(completion, int) else 0
    )
    GENERATION_LATENCY.labels(model=model).observe(elapsed)
    if progress.first_token_at is not None:
        TIME_TO_FIRST_TOKEN.labels(model=model).observe(progress.first_token_at - admitted.admitted_at)

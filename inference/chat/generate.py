"""Generate an admitted chat's answer: texts go to `on_texts` as they come, the end is returned.

A remote model (an OpenAI-compatible server) is called right here, on the event loop: no
thread, no broker, no channel layer between the upstream and the client; the chat's outcome
is recorded here too (`inference.chat.outcome`). A local model runs where the GPUs are (a
Celery worker, or this process's pool on the embedded default) and its events come back through
the relay (`inference.generation_session`); it records itself where it ran.

Failure mode: a chat that cannot be served, or fails, raises `ChatRefused` after its outcome
is recorded and what it held is given back. A chat whose caller leaves (the task is
cancelled) is recorded as cancelled and charged what it was sent.
"""

import asyncio
import time
from dataclasses import asdict, replace
from typing import Any

from django.conf import settings

from accounts.quotas.charge import Charge
from accounts.services.chat_quotas import quota_chat_finish_async
from gatehouse.database_calls import database_sync
from guardrails.stream import answer_redaction
from inference.chat.admission import ChatAdmitted
from inference.chat.answer import Begun, ChatEnd, OnTexts, OnToolCalls
from inference.chat.arrivals import chat_arrival_end
from inference.chat.outcome import ChatProgress, chat_outcome, chat_record_start_soon
from inference.chat.refusal import ChatRefused
from inference.chat.tool_call_reading import ToolCallReader
from inference.dispatch import InferenceBusy
from inference.engines.base import (
    ChatMessage,
    FinishReason,
    GenerationParams,
    GenerationResult,
    TokenLogprob,
    token_arguments,
)
from inference.engines.loader import UpstreamRefused, engine_for_version
from inference.engines.remote import RemoteMalformed, RemoteUnavailable
from inference.engines.remote_async import remote_generate
from inference.engines.remote_deployments import RemoteDeployments
from inference.engines.remote_embeddings import remote_embed
from inference.generation import GenerationJob
from inference.generation_session import GenerationLost, GenerationSession
from inference.services import chat_abandon
from inference.services.registry import model_version_load_refused_record

UNAVAILABLE_MESSAGE = "The model's server is not answering; try again shortly."
MALFORMED_MESSAGE = "The model's server sent a malformed answer; try again, or another model."


async def chat_generate(
    admitted: ChatAdmitted,
    *,
    stream: bool,
    on_started: Begun,
    on_texts: OnTexts,
    on_tool_calls: OnToolCalls | None,
) -> ChatEnd:
    """Ask the model: here for a remote one, where it runs for a local one. `on_started` is
    awaited once the chat is under way (a remote model's first piece, a local one's dispatch)."""
    if admitted.plan.remote and settings.GATEHOUSE_REMOTE_GENERATION == "web":
        return await _remote(
            admitted, stream=stream, on_started=on_started, on_texts=on_texts, on_tool_calls=on_tool_calls
        )
    reader = _tool_call_reader(admitted, on_texts=on_texts, on_tool_calls=on_tool_calls)
    if reader is None:
        return await _dispatched(admitted, on_started=on_started, on_texts=on_texts)
    end = await _dispatched(admitted, on_started=on_started, on_texts=reader.feed)
    await reader.finish()
    if reader.calls and end.finish_reason == "stop":
        end = replace(end, finish_reason="tool_calls")
    return end


def _tool_call_reader(
    admitted: ChatAdmitted, *, on_texts: OnTexts, on_tool_calls: OnToolCalls | None
) -> ToolCallReader | None:
    """A local version offered tools writes its calls in its text: read them out of it."""
    features = admitted.features
    if (
        not admitted.plan.tool_call_format
        or on_tool_calls is None
        or features is None
        or not features.tool_names
    ):
        return None
    return ToolCallReader(
        tool_call_format=admitted.plan.tool_call_format,
        call_id_prefix=f"call_{admitted.generation_id[:16]}",
        names=features.tool_names,
        on_texts=on_texts,
        on_tool_calls=on_tool_calls,
    )


async def _remote(
    admitted: ChatAdmitted,
    *,
    stream: bool,
    on_started: Begun,
    on_texts: OnTexts,
    on_tool_calls: OnToolCalls | None,
) -> ChatEnd:
    progress = ChatProgress(reply=[] if admitted.conversation_id else None)
    version = admitted.plan.version
    assert version is not None  # noqa: S101 - chat_prepare puts it in every plan
    try:
        engine = engine_for_version(version=version)
    except UpstreamRefused as refused:
        await database_sync(model_version_load_refused_record)(
            version=version, reason=str(refused), generation_id=admitted.generation_id
        )
        await _failed(admitted, progress, reason=str(refused))
        raise ChatRefused(
            code="unavailable", message="The model's upstream registration is not allowed on this server."
        ) from None
    assert isinstance(engine, RemoteDeployments)  # noqa: S101 - a remote version's engine

    delivery = _RemoteDelivery(
        progress=progress, on_started=on_started, on_texts=on_texts, on_tool_calls=on_tool_calls
    )
    params = admitted.plan.params
    vectors = None
    chat_record_start_soon(admitted, progress)  # while the upstream answers
    try:
        if admitted.embedding:
            embedded = await remote_embed(
                engine,
                inputs=[message["content"] for message in admitted.messages],
                dimensions=params.dimensions,
                max_seconds=params.max_seconds,
                attempts=progress.attempts,
            )
            vectors = embedded.vectors
            result = GenerationResult(
                prompt_tokens=embedded.prompt_tokens, completion_tokens=0, finish_reason=FinishReason.STOP
            )
        else:
            result = await remote_generate(
                engine,
                messages=[ChatMessage(**message) for message in admitted.messages],
                params=GenerationParams(**{**asdict(params), "stop": tuple(params.stop)}),
                stream=stream,
                deliver=delivery.texts,
                features=admitted.features,
                deliver_tool_calls=delivery.tool_calls if on_tool_calls is not None else None,
                attempts=progress.attempts,
            )
        await delivery.begin()  # an answer with nothing in it begins as it ends
    except RemoteMalformed as malformed:
        await _failed(admitted, progress, reason=str(malformed))
        raise ChatRefused(
            code="bad_upstream", message=MALFORMED_MESSAGE, protocol_code="unavailable"
        ) from None
    except RemoteUnavailable as unavailable:
        await _failed(admitted, progress, reason=str(unavailable))
        raise ChatRefused(code="unavailable", message=UNAVAILABLE_MESSAGE) from None
    except BaseException:
        # The caller left (cancelled) or something unforeseen: record it, give back, go on.
        await asyncio.shield(chat_cancelled(admitted, progress))
        raise
    end = replace(_end(result), vectors=vectors)
    details = end.as_event()
    if admitted.features is not None:
        details["features"] = admitted.features.names
    if vectors is not None:
        details["inputs"] = len(vectors)
    await chat_outcome(
        admitted=admitted,
        progress=progress,
        failed=False,
        charge=Charge(prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens),
        details=details,
    )
    return end


class _RemoteDelivery:
    """Hands a remote answer's pieces to the door, counting them in the chat's progress.

    The answer begins (`on_started`) with its first piece: until then the upstreams may fail
    and be retried, or the chat fall back to another model, with nothing written yet."""

    def __init__(
        self,
        *,
        progress: ChatProgress,
        on_started: Begun,
        on_texts: OnTexts,
        on_tool_calls: OnToolCalls | None,
    ) -> None:
        self._progress, self._on_texts, self._on_tool_calls = progress, on_texts, on_tool_calls
        self._on_started: Begun | None = on_started

    async def begin(self) -> None:
        if self._on_started is not None:
            on_started, self._on_started = self._on_started, None
            await on_started()

    async def _arrived(self) -> None:
        if self._progress.first_token_at is None:
            self._progress.first_token_at = time.time()
        await self.begin()

    async def texts(self, texts: list[str], logprobs: list[TokenLogprob] | None = None, /) -> None:
        await self._arrived()
        if self._progress.reply is not None:
            self._progress.reply.extend(texts)
        self._progress.delivered += len(texts)
        await self._on_texts(*token_arguments(texts, logprobs))

    async def tool_calls(self, deltas: list[dict[str, Any]]) -> None:
        await self._arrived()
        self._progress.delivered += 1
        assert self._on_tool_calls is not None  # noqa: S101 - only asked for when there is a reader
        await self._on_tool_calls(deltas)


async def _dispatch_abandoned(session: GenerationSession, admitted: ChatAdmitted) -> None:
    await session.cancel()
    await quota_chat_finish_async(hold=admitted.hold)


def _end(result: GenerationResult) -> ChatEnd:
    return ChatEnd(
        finish_reason=result.finish_reason.value,
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
    )


async def _failed(admitted: ChatAdmitted, progress: ChatProgress, *, reason: str) -> None:
    await chat_outcome(
        admitted=admitted,
        progress=progress,
        failed=True,
        charge=Charge(completion_tokens=progress.delivered),
        details={"code": "unavailable", "reason": reason, "completion_tokens": progress.delivered},
    )


async def chat_cancelled(admitted: ChatAdmitted, progress: ChatProgress) -> None:
    # What the client was sent is charged (the prompt's count is not known on this path).
    await chat_outcome(
        admitted=admitted,
        progress=progress,
        failed=False,
        charge=Charge(completion_tokens=progress.delivered),
        details={
            "finish_reason": "cancelled",
            "reason": "client gone",
            "completion_tokens": progress.delivered,
        },
    )


async def _dispatched(admitted: ChatAdmitted, *, on_started: Begun, on_texts: OnTexts) -> ChatEnd:
    """A local model: dispatched to where it runs, its events read back from a relay inbox."""
    plan = admitted.plan
    session = GenerationSession(
        lambda inbox_address: GenerationJob(
            generation_id=admitted.generation_id,
            client_id=admitted.request_id[:64],
            reply_channel=inbox_address,
            version_id=plan.version_id,
            model_name=plan.model_name,
            messages=admitted.messages,
            user_id=admitted.user.pk,
            api_key_id=admitted.api_key.pk if admitted.api_key else None,
            params=plan.params.to_payload(),
            request_id=admitted.request_id,
            client_ip=admitted.client_ip,
            enqueued_at=admitted.admitted_at,
            channel=admitted.channel,
            conversation_id=admitted.conversation_id,
            conversation_new=admitted.conversation_id is not None,  # named for this request
            quota=admitted.hold.quota.to_payload(),
            remote=plan.remote,
            fallback_from=admitted.fallback_from,
            redaction=answer_redaction(admitted.guard),
            arriving_with=chat_arrival_end(admitted.arrival),
        )
    )
    try:
        await session.start()
    except InferenceBusy as busy:
        await session.release()
        assert session.job is not None  # noqa: S101 - the job exists before dispatch
        await database_sync(chat_abandon)(job=session.job, reason=f"queue full: {busy}")
        raise ChatRefused(code="unavailable", message="The model is busy; try again shortly.") from None
    except BaseException:
        # The broker refused the job, or the caller left while it was being queued: if it was
        # queued after all, its cancel flag stops it; slot and quota go back now.
        await asyncio.shield(_dispatch_abandoned(session, admitted))
        raise
    try:
        await on_started()
        async for event in session.events():
            if event["type"] == "generation.tokens":
                if event["texts"] or event.get("logprobs"):
                    await on_texts(*token_arguments(event["texts"], event.get("logprobs")))
            elif event["type"] == "generation.failed":
                code = event.get("detail_code") or event["code"]
                raise ChatRefused(code=code, message=event["message"], protocol_code=event["code"])
            elif event["type"] == "generation.embedded":
                return ChatEnd(
                    finish_reason="stop",
                    prompt_tokens=int(event["prompt_tokens"]),
                    completion_tokens=0,
                    vectors=event["vectors"],
                )
            else:
                return ChatEnd(
                    finish_reason=event["finish_reason"],
                    prompt_tokens=int(event["prompt_tokens"]),
                    completion_tokens=int(event["completion_tokens"]),
                )
    except GenerationLost as lost:
        raise ChatRefused(code="unavailable", message=lost.client_message) from None
    finally:
        await session.cancel()  # the caller left while we waited; nothing if it ended
        await session.release()
    raise ChatRefused(code="unavailable", message="The generation ended without a result.")

"""`POST /v1/chat/completions`: OpenAI's chat completions, whole or streamed as server-sent events.

An async view: it awaits the generation's events on a channel of its own instead of holding
a thread. The generation audits itself where it runs; a client that hangs up mid-stream
cancels it (it then records itself as cancelled).
"""

import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import asdict
from typing import Any

from adrf.views import APIView
from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpResponseBase, StreamingHttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import APIException, NotFound, PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.authentication import request_principal
from accounts.models import ApiKey, User
from accounts.services.quotas import QuotaAdmission, QuotaRefused, quota_admit, quota_release
from audit.context import request_context_current
from inference.api.completion_request import (
    CompletionRequest,
    CompletionRequestInvalid,
    completion_request_parse,
)
from inference.api.openai_format import CompletionFormat, error_object, sse
from inference.api.serializers import ChatCompletionRequestSerializer, ChatCompletionSerializer
from inference.chat_slots import chat_slot_acquire, chat_slot_release
from inference.dispatch import InferenceBusy
from inference.generation import GenerationJob
from inference.generation_session import GenerationLost, GenerationSession
from inference.services import (
    ChatPlan,
    ChatRejected,
    chat_abandon,
    chat_prepare,
    chat_refusal_record,
    chat_token_estimate,
)

# Where a stored API chat can be found later (/api/conversations/<id>/).
CONVERSATION_HEADER = "X-Gatehouse-Conversation"


class ClosingStreamingResponse(StreamingHttpResponse):
    """A streaming response whose source generator is closed as soon as the client hangs up.

    Django's ASGI handler closes the iterator it takes from `__aiter__` when the client
    disconnects, but the base class hands it a wrapper that does not close the view's own
    generator: that one lingered until garbage collection, and the generation ran on. Here the
    wrapper closes its source, so the generator's `finally` (cancel the generation) runs then.
    """

    def __init__(self, source: AsyncGenerator[str], **kwargs: Any) -> None:
        super().__init__(source, **kwargs)
        self._source = source

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._closing_iterator()

    async def _closing_iterator(self) -> AsyncIterator[bytes]:
        async with aclosing(self._source) as parts:
            async for part in parts:
                yield self.make_bytes(part)


class QuotaRefusedError(APIException):
    """A quota or rate limit refused the request: 429 with Retry-After (503 if unverifiable)."""

    def __init__(self, refused: QuotaRefused) -> None:
        super().__init__(detail=refused.message, code=refused.code)
        self.status_code = refused.status
        # DRF's exception handler turns `wait` into the Retry-After header.
        self.wait = refused.retry_after


class ServiceUnavailable(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The model is not available right now; try again shortly."
    default_code = "unavailable"


class TooManyRequests(APIException):
    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_code = "rate_limited"


class ContextLengthExceeded(APIException):
    """The prompt (with max_tokens) does not fit the model's context: OpenAI's 400 for it."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "context_length_exceeded"


_REJECTIONS: dict[str, type[APIException]] = {
    "not_found": NotFound,
    "invalid": ValidationError,
    "forbidden": PermissionDenied,
    "unavailable": ServiceUnavailable,
    "rate_limited": TooManyRequests,
    "quota_exceeded": TooManyRequests,
    "context_length_exceeded": ContextLengthExceeded,
}


def _rejection(code: str, message: str) -> APIException:
    return _REJECTIONS.get(code, ServiceUnavailable)(message)


class ChatCompletionView(APIView):  # type: ignore[misc]
    required_scope = "chat"

    @extend_schema(
        operation_id="createChatCompletion",
        request=ChatCompletionRequestSerializer,
        responses={200: ChatCompletionSerializer},
        description=(
            "OpenAI-compatible chat completion. With `stream: true` the answer is a "
            "`text/event-stream` of `chat.completion.chunk` objects ending with `data: [DONE]`."
        ),
    )
    async def post(self, request: Request) -> HttpResponseBase:
        context = request_context_current()
        request_id = context.request_id if context else uuid.uuid4().hex
        try:
            completion = completion_request_parse(request.data, request_id=request_id)
        except CompletionRequestInvalid as invalid:
            raise ValidationError({invalid.param or "detail": invalid.message}) from None
        user: User = request.user  # type: ignore[assignment]
        principal = request_principal(request)
        plan, quota = await _admit(
            user=user, api_key=principal.api_key, completion=completion, request_id=request_id
        )
        generation_id = uuid.uuid4().hex
        # Stored only when the operator chose to keep API chat content.
        conversation_id = str(uuid.uuid4()) if settings.GATEHOUSE_STORE_API_CONVERSATIONS else None
        session = GenerationSession(
            lambda channel: GenerationJob(
                generation_id=generation_id,
                client_id=request_id[:64],
                reply_channel=channel,
                version_id=plan.version_id,
                model_name=plan.model_name,
                messages=[{"role": m.role, "content": m.content} for m in completion.frame.messages],
                user_id=user.pk,
                api_key_id=principal.api_key.pk if principal.api_key else None,
                params=asdict(plan.params),
                request_id=request_id,
                client_ip=context.client_ip if context else None,
                enqueued_at=time.time(),
                channel="api",
                conversation_id=conversation_id,
                quota=quota.to_payload(),
                remote=plan.remote,
            )
        )
        await _start(session, user=user, quota=quota)
        answer = CompletionFormat(
            generation_id=generation_id, model=plan.model_name, version=plan.version_label
        )
        response: HttpResponseBase
        if completion.stream:
            response = ClosingStreamingResponse(
                _stream(session, answer, include_usage=completion.include_usage),
                content_type="text/event-stream",
            )
            response["Cache-Control"] = "no-cache"
            response["X-Accel-Buffering"] = "no"  # proxies must pass each chunk on at once
        else:
            response = Response(await _whole(session, answer))
        if conversation_id:
            response[CONVERSATION_HEADER] = conversation_id
        for header, value in quota.headers.items():
            response[header] = value
        return response


async def _admit(
    *, user: User, api_key: ApiKey | None, completion: CompletionRequest, request_id: str
) -> tuple[ChatPlan, QuotaAdmission]:
    """What serves the request, or the API error saying why nothing will.

    Takes a chat slot and the request's quota reservations, last, once nothing else refuses.
    """
    try:
        plan = await sync_to_async(chat_prepare)(
            user=user, frame=completion.frame, sticky_key=f"{user.pk}:{request_id}"
        )
    except ChatRejected as rejected:
        await _refusal_record(
            user=user,
            api_key=api_key,
            completion=completion,
            code=rejected.detail_code,
            reason=rejected.message,
        )
        raise _rejection(rejected.detail_code, rejected.message) from None
    limit = settings.GATEHOUSE_MAX_CONCURRENT_CHATS_PER_USER
    if not await sync_to_async(chat_slot_acquire)(user_id=user.pk, limit=limit):
        raise TooManyRequests(f"You already have {limit} chats running; wait for one to end.")
    try:
        quota = await sync_to_async(quota_admit)(
            user=user,
            api_key=api_key,
            token_estimate=chat_token_estimate(
                messages=completion.frame.messages, max_tokens=plan.params.max_tokens
            ),
            lease_seconds=plan.params.max_seconds or settings.GATEHOUSE_GENERATION_START_TIMEOUT,
        )
    except QuotaRefused as refused:
        await sync_to_async(chat_slot_release)(user_id=user.pk)
        await _refusal_record(
            user=user, api_key=api_key, completion=completion, code=refused.code, reason=refused.message
        )
        raise QuotaRefusedError(refused) from None
    return plan, quota


async def _refusal_record(
    *, user: User, api_key: ApiKey | None, completion: CompletionRequest, code: str, reason: str
) -> None:
    await sync_to_async(chat_refusal_record)(
        user=user, api_key=api_key, channel="api", model_name=completion.frame.model, code=code, reason=reason
    )


async def _start(session: GenerationSession, *, user: User, quota: QuotaAdmission) -> None:
    """Dispatch the generation; if it cannot be queued, give slot and quota back and say why."""
    try:
        await session.start()
    except InferenceBusy as busy:
        await session.release()
        assert session.job is not None  # noqa: S101 - the job exists before dispatch
        await sync_to_async(chat_abandon)(job=session.job, reason=f"queue full: {busy}")
        raise ServiceUnavailable("The model is busy; try again shortly.") from None
    except BaseException:
        # The broker refused the job, say: nothing runs, so slot and quota go back now.
        await sync_to_async(chat_slot_release)(user_id=user.pk)
        await sync_to_async(quota_release)(admission=quota)
        raise


async def _whole(session: GenerationSession, answer: CompletionFormat) -> dict[str, Any]:
    texts: list[str] = []
    try:
        async for event in session.events():
            if event["type"] == "generation.tokens":
                texts.extend(event["texts"])
            elif event["type"] == "generation.failed":
                raise _rejection(event.get("detail_code") or event["code"], event["message"])
            else:
                return answer.completion(text="".join(texts), finished=event)
    except GenerationLost as lost:
        raise ServiceUnavailable(lost.client_message) from None
    finally:
        await session.cancel()  # the client left while we waited; nothing if it ended
        await session.release()
    raise ServiceUnavailable("The generation ended without a result.")


async def _stream(
    session: GenerationSession, answer: CompletionFormat, *, include_usage: bool
) -> AsyncGenerator[str]:
    """SSE chunks: the role, one per token, the finish reason, usage if asked, then [DONE]."""
    try:
        yield answer.chunk(delta={"role": "assistant", "content": ""}, include_usage=include_usage)
        async for event in session.events():
            if event["type"] == "generation.tokens":
                for text in event["texts"]:
                    yield answer.chunk(delta={"content": text}, include_usage=include_usage)
            elif event["type"] == "generation.failed":
                code = event.get("detail_code") or event["code"]
                yield sse(error_object(message=event["message"], code=code))
                return
            else:
                yield answer.chunk(
                    delta={}, finish_reason=event["finish_reason"], include_usage=include_usage
                )
                if include_usage:
                    yield answer.usage_chunk(event)
                yield sse("[DONE]")
    except GenerationLost as lost:
        yield sse(error_object(message=lost.client_message, code="unavailable"))
    finally:
        # Reached early when the client hangs up: the generation stops and records itself.
        await session.cancel()
        await session.release()

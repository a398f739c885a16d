"""The `/v1/chat/completions`, `/v1/completions` and `/v1/responses` door: parse, call the
pipeline, format in OpenAI's shapes.

Transport-free: what it answers goes to a `Responder` (status and headers, then bytes), which
the raw ASGI route (`inference.chat.asgi`, what serves production) and the DRF view
(`inference.api.completions`, reached through Django) each implement in a few lines.

Streamed answers are server-sent events: the role, the texts of each read together in one
write, the finish reason, usage if asked, then `[DONE]`. Whole answers ask the upstream for
a whole answer.
"""

import functools
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

import orjson
from django.conf import settings

from accounts.authentication import SCOPE_MISSING_MESSAGE
from accounts.principal import Principal
from inference.api.completion_request import CompletionRequest, completion_request_parse
from inference.api.openai_format import (
    AnswerFormat,
    ChoiceWritten,
    CompletionFormat,
    TextCompletionFormat,
)
from inference.api.request_invalid import CompletionRequestInvalid
from inference.api.responses_format import ResponsesFormat
from inference.api.responses_request import responses_request_parse
from inference.api.text_completion_request import text_completion_request_parse
from inference.chat.admission import ChatAdmitted
from inference.chat.answer import ChatEnd, ChatStart
from inference.chat.choices import choices_admit, choices_run
from inference.chat.refusal import ChatRefused
from inference.chat.run import chat_run
from inference.engines.base import TokenLogprob
from inference.engines.tool_calls import tool_calls_merge

_Request = TypeVar("_Request")
# Where a stored API chat can be found later (/api/conversations/<id>/).
CONVERSATION_HEADER = "X-Gatehouse-Conversation"
# The model that answered: the one asked for, or a fallback where it could not.
MODEL_HEADER = "X-Gatehouse-Model"
# Whether the answer came from the model's response cache ("hit") or the model ("miss").
CACHE_HEADER = "X-Gatehouse-Cache"
CHAT_SCOPE = "chat"
_SSE_HEADERS = [
    ("Content-Type", "text/event-stream"),
    ("Cache-Control", "no-cache"),
    ("X-Accel-Buffering", "no"),  # proxies must pass each chunk on at once
]
_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    502: "server_error",
    503: "server_error",
}


class Responder(Protocol):
    """Where the door's answer goes: `start` once, then `write` any number of times, `end` once."""

    async def start(self, status: int, headers: list[tuple[str, str]]) -> None: ...

    async def write(self, data: bytes) -> None: ...

    async def end(self, data: bytes = b"") -> None: ...


def error_body(*, status: int, message: str, code: str | None) -> bytes:
    """OpenAI's error object (the same shape `gatehouse.api_errors` gives every /v1 error)."""
    return orjson.dumps(
        {"error": {"message": message, "type": _OPENAI_TYPES.get(status, "api_error"), "code": code}}
    )


async def error_respond(
    responder: Responder,
    *,
    status: int,
    message: str,
    code: str | None,
    headers: Mapping[str, str] | None = None,
) -> None:
    await responder.start(status, [("Content-Type", "application/json"), *(headers or {}).items()])
    await responder.end(error_body(status=status, message=message, code=code))


async def scope_refused(*, principal: Principal, scope: str, responder: Responder) -> bool:
    """True once a 403 has been answered because the caller's key lacks `scope`."""
    if principal.has_scope(scope):
        return False
    await error_respond(
        responder,
        status=403,
        message=SCOPE_MISSING_MESSAGE,
        code="permission_denied",
    )
    return True


async def request_read(
    *, principal: Principal, data: Any, request_id: str, responder: Responder, parse: Callable[..., _Request]
) -> _Request | None:
    """The request `parse` reads from `data`; None once a refusal (the key's scope, an invalid
    body) has been answered."""
    if await scope_refused(principal=principal, scope=CHAT_SCOPE, responder=responder):
        return None
    try:
        return parse(data, request_id=request_id)
    except CompletionRequestInvalid as invalid:
        # Named as DRF names a field's error, the shape every other /v1 error has.
        message = f"{invalid.param}: {invalid.message}" if invalid.param else invalid.message
        await error_respond(responder, status=400, message=message, code="invalid")
        return None


async def _serve(
    *,
    principal: Principal,
    data: Any,
    request_id: str,
    client_ip: str | None,
    responder: Responder,
    parse: Callable[..., CompletionRequest],
    answer_format: Callable[..., AnswerFormat],
) -> None:
    """Answer one request of a completion-shaped door from an authenticated caller; never
    raises a refusal."""
    completion = await request_read(
        principal=principal, data=data, request_id=request_id, responder=responder, parse=parse
    )
    if completion is None:
        return
    try:
        admitted = await choices_admit(
            principal=principal,
            frame=completion.frame,
            request_id=request_id,
            client_ip=client_ip,
            channel="api",
        )
    except ChatRefused as refused:
        await refusal_respond(responder, refused)
        return
    first, last = admitted[0], admitted[-1]
    # Stored only when the operator chose to keep API chat content: plain chats of one choice
    # (a text completion is no chat; tool calls and results are the application's to keep).
    frame = completion.frame
    stored = not frame.raw_prompt and frame.features is None and frame.choices == 1
    if settings.GATEHOUSE_STORE_API_CONVERSATIONS and stored:
        first.conversation_id = str(uuid.uuid4())
    answer = answer_format(
        generation_id=first.generation_id,
        model=first.plan.model_name,
        version=first.plan.version_label,
        include_usage=completion.include_usage,
        echo=completion.echo,
        choices=len(admitted),
    )
    # The quota headers as the last admission left them.
    headers = list(last.hold.quota.headers.items())
    if first.conversation_id:
        headers.append((CONVERSATION_HEADER, first.conversation_id))
    if completion.stream:
        await _stream(admitted, answer, responder, headers=headers)
    else:
        await _whole(admitted, answer, responder, headers=headers)


# The doors over `_serve`: each reads its own request and writes its own answer's shape.
chat_completions_serve = functools.partial(
    _serve, parse=completion_request_parse, answer_format=CompletionFormat
)
text_completions_serve = functools.partial(
    _serve, parse=text_completion_request_parse, answer_format=TextCompletionFormat
)
responses_serve = functools.partial(_serve, parse=responses_request_parse, answer_format=ResponsesFormat)


async def refusal_respond(responder: Responder, refused: ChatRefused) -> None:
    headers = {"Retry-After": str(refused.retry_after)} if refused.retry_after is not None else None
    assert refused.status is not None  # noqa: S101 - set by ChatRefused itself
    await error_respond(
        responder, status=refused.status, message=refused.message, code=refused.code, headers=headers
    )


def _finished(ends: list[ChatEnd]) -> dict[str, Any]:
    """How the answer ended: the first choice's finish, every choice's tokens."""
    return {
        "finish_reason": ends[0].finish_reason,
        "prompt_tokens": sum(end.prompt_tokens for end in ends),
        "completion_tokens": sum(end.completion_tokens for end in ends),
    }


async def _stream(
    admitted: list[ChatAdmitted],
    answer: AnswerFormat,
    responder: Responder,
    *,
    headers: list[tuple[str, str]],
) -> None:
    started = False
    several = len(admitted) > 1

    async def on_started(start: ChatStart) -> None:
        # The stream opens once the chat is under way, saying who answers (the model asked
        # for, or its fallback); a refusal before it is a plain error.
        nonlocal started
        if started:
            return
        started = True
        answer.served_by(model=start.model, version=start.version)
        await responder.start(200, [*_SSE_HEADERS, *headers, *_start_headers(start)])
        if opening := answer.opening_bytes():
            await responder.write(opening)

    async def run(index: int, choice: ChatAdmitted) -> ChatEnd:
        async def on_texts(texts: list[str], logprobs: list[TokenLogprob] | None = None, /) -> None:
            await responder.write(answer.texts_bytes(texts, logprobs, index=index))

        async def on_tool_calls(deltas: list[dict[str, Any]]) -> None:
            await responder.write(answer.tool_calls_bytes(deltas, index=index))

        end = await chat_run(
            choice,
            stream=True,
            on_started=on_started,
            on_texts=on_texts,
            on_tool_calls=on_tool_calls if _offers_tools(choice) else None,
        )
        if several:  # each choice's end as it comes; one choice's goes with the closing
            await responder.write(answer.choice_end_bytes(finish_reason=end.finish_reason, index=index))
        return end

    try:
        ends = await choices_run(admitted, run)
    except ChatRefused as refused:
        if not started:
            await refusal_respond(responder, refused)
        else:  # the stream had begun: the error is its last event
            await responder.end(answer.failure_bytes(message=refused.message, code=refused.code))
        return
    last_end = b"" if several else answer.choice_end_bytes(finish_reason=ends[0].finish_reason)
    await responder.end(last_end + answer.closing_bytes(finished=_finished(ends)))


async def _nothing(_start: ChatStart) -> None:
    """A whole answer starts when it ends."""


def _start_headers(start: ChatStart | None) -> list[tuple[str, str]]:
    """Who answered, where it was not the model asked for or not the model at all."""
    if start is None:
        return []
    headers = [(MODEL_HEADER, start.model)]
    if start.cache is not None:
        headers.append((CACHE_HEADER, start.cache))
    return headers


async def _whole(
    admitted: list[ChatAdmitted],
    answer: AnswerFormat,
    responder: Responder,
    *,
    headers: list[tuple[str, str]],
) -> None:
    async def run(_index: int, choice: ChatAdmitted) -> tuple[ChatEnd, ChoiceWritten]:
        texts: list[str] = []
        deltas: list[dict[str, Any]] = []
        # Every token's entry, where the request asked for log probabilities.
        entries: list[TokenLogprob] | None = None if choice.plan.params.logprobs is None else []

        async def on_texts(more: list[str], logprobs: list[TokenLogprob] | None = None, /) -> None:
            texts.extend(more)
            if entries is not None and logprobs:
                entries.extend(logprobs)

        async def on_tool_calls(more: list[dict[str, Any]]) -> None:
            deltas.extend(more)

        end = await chat_run(
            choice,
            stream=False,
            on_started=_nothing,
            on_texts=on_texts,
            on_tool_calls=on_tool_calls if _offers_tools(choice) else None,
        )
        written = ChoiceWritten(
            text="".join(texts),
            finish_reason=end.finish_reason,
            tool_calls=tool_calls_merge(deltas) or None,
            logprobs=entries,
        )
        return end, written

    try:
        results = await choices_run(admitted, run)
    except ChatRefused as refused:
        await refusal_respond(responder, refused)
        return
    start = results[0][0].start
    if start is not None:
        answer.served_by(model=start.model, version=start.version)
    await responder.start(200, [("Content-Type", "application/json"), *headers, *_start_headers(start)])
    whole = answer.whole(
        choices=[written for _, written in results], finished=_finished([end for end, _ in results])
    )
    await responder.end(orjson.dumps(whole))


def _offers_tools(admitted: ChatAdmitted) -> bool:
    return admitted.features is not None and bool(admitted.features.tool_names)

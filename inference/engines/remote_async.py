"""The remote engine called from an event loop: no thread, no relay, no channel layer.

The same rules as `OpenAICompatibleEngine.generate_stream` (the outbound guard before every
call, retries only before the first token, the upstream's circuit breaker, never a redirect,
reported usage believed only within what the request could have used), with the upstream
asked for what the client asked for: a stream, or a whole answer.

Texts read together from the network reach `deliver` together: one write to the client per
read, not per token.
"""

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson

from gatehouse.outbound import OutboundUrlRefused, outbound_url_check_async
from inference.engines.base import ChatMessage, FinishReason, GenerationParams, GenerationResult
from inference.engines.remote import (
    _FINISH,
    OpenAICompatibleEngine,
    RemoteUnavailable,
    _PromptSize,
    _reported_count,
    _RetryBeforeFirstToken,
    _SseStream,
    _status_check,
)

Deliver = Callable[[list[str]], Awaitable[None]]

# One client per engine and event loop: connections are kept alive between requests, and an
# asyncio client belongs to the loop that made it.
_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, httpx.AsyncClient]]" = (
    weakref.WeakKeyDictionary()
)


def _client(engine: OpenAICompatibleEngine) -> httpx.AsyncClient:
    per_loop = _clients.setdefault(asyncio.get_running_loop(), {})
    client = per_loop.get(id(engine))
    if client is None:
        # Never follow a redirect: it would lead past the outbound guard.
        client = per_loop[id(engine)] = httpx.AsyncClient(
            timeout=engine.timeout,
            headers=engine.headers,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
        )
    return client


async def remote_generate(
    engine: OpenAICompatibleEngine,
    *,
    messages: list[ChatMessage],
    params: GenerationParams,
    stream: bool,
    deliver: Deliver,
) -> GenerationResult:
    """Ask the upstream; hand its texts to `deliver`; return what to charge.

    Raises RemoteUnavailable when it cannot be served (refused address, circuit open, errors
    before the first token past the retries, a connection lost mid-answer).
    """
    try:
        # Checked at every call, not only at registration: a name can resolve elsewhere later.
        await outbound_url_check_async(url=engine.url)
    except OutboundUrlRefused as refused:
        raise RemoteUnavailable(f"the upstream's address is refused: {refused}") from None
    body = engine._body(messages, params)
    if not stream:
        body["stream"] = False
        body.pop("stream_options", None)
    prompt = _PromptSize(
        content_bytes=sum(len(message.content.encode()) for message in messages), messages=len(messages)
    )
    once = _stream_once if stream else _whole_once
    for attempt in range(engine.max_retries + 1):
        if not engine.breaker.allow():
            raise RemoteUnavailable(
                "the upstream is failing; requests are paused for a moment (circuit open)"
            )
        try:
            result = await once(engine, body, params=params, prompt=prompt, deliver=deliver)
        except _RetryBeforeFirstToken as exc:
            engine.breaker.failed()
            if attempt == engine.max_retries:
                raise RemoteUnavailable(
                    f"the upstream did not answer after {attempt + 1} tries: {exc}"
                ) from None
            await asyncio.sleep(engine.retry_backoff * 2**attempt)
        except RemoteUnavailable:
            engine.breaker.failed()
            raise
        else:
            engine.breaker.succeeded()
            return result
    raise AssertionError("unreachable")  # pragma: no cover


async def _stream_once(
    engine: OpenAICompatibleEngine,
    body: dict[str, Any],
    *,
    params: GenerationParams,
    prompt: _PromptSize,
    deliver: Deliver,
) -> GenerationResult:
    pending: list[str] = []
    stream = _SseStream(on_token=pending.extend, max_pieces=params.max_tokens)
    ended = False
    buffer = b""
    try:
        async with asyncio.timeout(params.max_seconds or None):
            async with _client(engine).stream(
                "POST", engine.url, content=orjson.dumps(body), headers=_JSON
            ) as response:
                _status_check(response.status_code)
                async for data in response.aiter_raw():
                    buffer += data
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        if stream.feed(line.decode("utf-8", "replace").rstrip("\r")):
                            ended = True
                            break
                        if stream.overflowed:
                            # Each piece is at least one token: an upstream that ignores
                            # max_tokens is not read, nor passed on, past it.
                            stream.finish = FinishReason.LENGTH
                            break
                    if pending:
                        texts, pending[:] = list(pending), []
                        await deliver(texts)
                    if ended or (stream.finish == FinishReason.LENGTH and stream.overflowed):
                        break
    except TimeoutError:
        stream.finish = FinishReason.LENGTH  # the model's wall-clock limit: as much as it wrote
    except httpx.TransportError as exc:
        if stream.chunks == 0:
            raise _RetryBeforeFirstToken(type(exc).__name__) from exc
        raise RemoteUnavailable(f"the upstream connection failed mid-stream ({type(exc).__name__})") from exc
    if pending:
        await deliver(list(pending))
    if not ended and stream.finish is None:
        # The connection closed without `[DONE]` or a finish reason: a cut-off answer.
        if stream.chunks == 0:
            raise _RetryBeforeFirstToken("the stream ended before any token")
        raise RemoteUnavailable("the upstream connection failed mid-stream (the stream ended early)")
    return stream.result(max_tokens=params.max_tokens, prompt=prompt)


_JSON = {"Content-Type": "application/json"}


async def _whole_once(
    engine: OpenAICompatibleEngine,
    body: dict[str, Any],
    *,
    params: GenerationParams,
    prompt: _PromptSize,
    deliver: Deliver,
) -> GenerationResult:
    try:
        async with asyncio.timeout(params.max_seconds or None):
            response = await _client(engine).post(engine.url, content=orjson.dumps(body), headers=_JSON)
    except TimeoutError:
        raise RemoteUnavailable("the upstream did not answer within the model's time limit") from None
    except httpx.TransportError as exc:
        raise _RetryBeforeFirstToken(type(exc).__name__) from exc
    _status_check(response.status_code)
    try:
        answer = orjson.loads(response.content)
        choice = answer["choices"][0]
        text = (choice.get("message") or {}).get("content") or ""
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError):
        raise RemoteUnavailable("the upstream sent a malformed answer") from None
    if not isinstance(text, str):
        raise RemoteUnavailable("the upstream sent a malformed answer")
    if text:
        await deliver([text])
    usage = answer.get("usage") if isinstance(answer.get("usage"), dict) else None
    # Each token is at least one byte: the text's bytes bound what it can have cost.
    completion = _reported_count(usage, "completion_tokens")
    completion = min(len(text.encode()), params.max_tokens) if completion is None else completion
    prompt_tokens = _reported_count(usage, "prompt_tokens")
    return GenerationResult(
        prompt_tokens=min(
            prompt.content_bytes if prompt_tokens is None else prompt_tokens, prompt.most_tokens
        ),
        completion_tokens=min(completion, params.max_tokens),
        finish_reason=_FINISH.get(str(choice.get("finish_reason")), FinishReason.STOP),
    )

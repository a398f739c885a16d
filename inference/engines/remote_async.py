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
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import orjson

from gatehouse.outbound import OutboundUrlRefused, outbound_url_check_async
from gatehouse.tracing import tracing_on, upstream_call
from inference.engines.base import (
    AsyncTokenCallback,
    ChatFeatures,
    ChatMessage,
    FinishReason,
    GenerationParams,
    GenerationResult,
    TokenLogprob,
    token_arguments,
)
from inference.engines.deployment_load import NO_LEASE, deployment_give_back_async, prompt_tokens_estimate
from inference.engines.logprobs import logprobs_content_read
from inference.engines.remote import (
    _FINISH,
    OpenAICompatibleEngine,
    RemoteMalformed,
    RemoteUnavailable,
    _PromptSize,
    _reported_count,
    _RetryBeforeFirstToken,
    _SseStream,
    _status_check,
)
from inference.engines.remote_deployments import AT_LIMIT, Attempt, RemoteDeployments, Upstream
from inference.engines.tool_calls import tool_calls_read

_T = TypeVar("_T")


# Texts read together, and (where they were asked for) their tokens' log probabilities.
Deliver = AsyncTokenCallback
DeliverToolCalls = Callable[[list[dict[str, Any]]], Awaitable[None]]


async def _tool_calls_unasked(deltas: list[dict[str, Any]]) -> None:
    """Nobody offered tools: the stream's reader never passes calls on (see _SseStream)."""


@dataclass(frozen=True)
class _ToolCallPieces:
    deltas: list[dict[str, Any]]


@dataclass(frozen=True)
class _LogprobPieces:
    entries: list[TokenLogprob]


class _Outlet:
    """What the upstream said since the last hand-on, in order: texts (with their tokens' log
    probabilities, where `logprobs` asked for them), and pieces of calls."""

    def __init__(self, deliver: Deliver, deliver_tool_calls: DeliverToolCalls, *, logprobs: bool) -> None:
        self.deliver = deliver
        self.deliver_tool_calls = deliver_tool_calls
        self.logprobs = logprobs
        self.pending: list[str | _ToolCallPieces | _LogprobPieces] = []

    def texts(self, texts: list[str]) -> None:
        self.pending.extend(texts)

    def tool_calls(self, deltas: list[dict[str, Any]]) -> None:
        self.pending.append(_ToolCallPieces(deltas))

    def token_logprobs(self, entries: list[TokenLogprob]) -> None:
        self.pending.append(_LogprobPieces(entries))

    async def flush(self) -> None:
        """Hand on what is pending: each run of texts in one call, each chunk's calls in one."""
        pending, self.pending = self.pending, []
        texts: list[str] = []
        entries: list[TokenLogprob] = []
        for item in pending:
            if isinstance(item, str):
                texts.append(item)
            elif isinstance(item, _LogprobPieces):
                entries.extend(item.entries)
            else:
                if texts or entries:
                    await self._texts_deliver(texts, entries)
                    texts, entries = [], []
                await self.deliver_tool_calls(item.deltas)
        if texts or entries:
            await self._texts_deliver(texts, entries)

    async def _texts_deliver(self, texts: list[str], entries: list[TokenLogprob]) -> None:
        await self.deliver(*token_arguments(texts, entries if self.logprobs else None))


# One HTTP client session per event loop, for every upstream: it keeps connections alive
# between requests, and belongs to the loop that made it. aiohttp, not httpx as on the sync
# path: measured on a streamed chat (16 chunks), httpx's asyncio client cost 1.6 ms of CPU a
# request and aiohttp's 0.3 ms, on the path every remote chat takes. Credentials and time
# limits go with each request, never with the session: it serves every engine.
_sessions: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopSession]" = weakref.WeakKeyDictionary()


class _LoopSession:
    """A loop's session, closed with the loop.

    `keeper` is an async generator started on the loop, so the loop tracks it: when the loop
    shuts down (`shutdown_asyncgens`, which asyncio.run, uvicorn, asgiref's async_to_sync and
    pytest's loops all call), it closes the keeper, whose `finally` closes the session and
    its connections. A loop that lives as long as the server closes it at the lifespan's end.
    """

    def __init__(self) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=0),
            # No proxy from the environment: the outbound guard checked the upstream's address.
            trust_env=False,
        )
        self.keeper = self._keep()

    async def _keep(self) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            await self.session.close()


async def _session() -> aiohttp.ClientSession:
    loop = asyncio.get_running_loop()
    held = _sessions.get(loop)
    if held is None or held.session.closed:
        held = _sessions[loop] = _LoopSession()
        await anext(held.keeper)
    return held.session


async def remote_sessions_close() -> None:
    """Close this event loop's session and its connections (the server's shutdown)."""
    held = _sessions.pop(asyncio.get_running_loop(), None)
    if held is not None:
        await held.keeper.aclose()


async def remote_post(
    engine: OpenAICompatibleEngine, body: dict[str, Any], *, url: str
) -> aiohttp.ClientResponse:
    """POST `body` to `url`, the engine's upstream; the response's body is still to be read.
    Never follows a redirect (it would lead past the outbound guard)."""
    session = await _session()
    return await session.post(
        url,
        data=orjson.dumps(body),
        headers={**engine.headers, "Content-Type": "application/json"},
        allow_redirects=False,
        timeout=aiohttp.ClientTimeout(
            total=None, sock_connect=engine.timeout.connect, sock_read=engine.timeout.read
        ),
    )


async def remote_generate(
    upstreams: RemoteDeployments,
    *,
    messages: list[ChatMessage],
    params: GenerationParams,
    stream: bool,
    deliver: Deliver,
    features: ChatFeatures | None = None,
    deliver_tool_calls: DeliverToolCalls | None = None,
    attempts: list[Attempt] | None = None,
) -> GenerationResult:
    """Ask the version's upstreams (`remote_call`); hand the texts to `deliver` and the tool
    calls (pieces of them, in a stream) to `deliver_tool_calls`; return what to charge.
    `features` (tools, structured output) are passed through as the client sent them;
    `attempts` gets every try.

    Raises RemoteUnavailable when it cannot be served (refused address, circuit open, errors
    before the first token past the retries, a connection lost mid-answer), RemoteMalformed
    when what it answered is not a chat completion.
    """
    extra_bytes = len(orjson.dumps(features.fields)) if features is not None else 0  # tools are prompt too
    prompt = _PromptSize(
        content_bytes=sum(len(message.content.encode()) for message in messages) + extra_bytes,
        messages=len(messages),
    )
    outlet = _Outlet(deliver, deliver_tool_calls or _tool_calls_unasked, logprobs=params.logprobs is not None)
    asked = _Asked(
        tool_names=features.tool_names if features else frozenset(), tools=deliver_tool_calls is not None
    )
    once = _stream_once if stream else _whole_once

    def attempt(engine: OpenAICompatibleEngine) -> Awaitable[GenerationResult]:
        body = _request_body(engine, messages=messages, params=params, stream=stream, features=features)
        return once(engine, body, params=params, prompt=prompt, outlet=outlet, asked=asked)

    return await remote_call(
        upstreams,
        attempt,
        attempts=attempts,
        tokens=prompt_tokens_estimate(prompt_bytes=prompt.content_bytes),
        seconds=params.max_seconds,
        used=_tokens_used,
    )


def _tokens_used(result: GenerationResult) -> int:
    return result.prompt_tokens + result.completion_tokens


def _request_body(
    engine: OpenAICompatibleEngine,
    *,
    messages: list[ChatMessage],
    params: GenerationParams,
    stream: bool,
    features: ChatFeatures | None,
) -> dict[str, Any]:
    """What this upstream is asked (each names the model in its own terms)."""
    body = engine._body(messages, params)
    if not stream:
        body["stream"] = False
        body.pop("stream_options", None)
    if features is not None:
        body.update(features.fields)
        body["messages"] = features.messages or body["messages"]
    return body


async def remote_call(
    upstreams: RemoteDeployments,
    attempt: Callable[[OpenAICompatibleEngine], Awaitable[_T]],
    *,
    attempts: list[Attempt] | None = None,
    tokens: int = 0,
    seconds: float | None = None,
    used: Callable[[_T], int] = lambda _: 0,
) -> _T:
    """`attempt` on a version's upstreams, under their rules: tried in an order drawn by weight
    (or the least busy first), each one's room taken for a call of `tokens` prompt tokens
    lasting at most `seconds` (an upstream at its limits is passed over), its address checked
    before it is called and its circuit breaker asked (an open one is skipped); a failure
    while nothing was answered moves on to the next (the same one again after a backoff,
    where it is the only one left). `attempts` gets every try, for the record; `used` says
    what an answer cost, counted against its upstream's minute.

    Raises RemoteUnavailable when no upstream answered, or one failed once it had.
    """
    tried = attempts if attempts is not None else []
    failures: Counter[str] = Counter()
    out: set[str] = set()
    order = upstreams.order()
    # Its tries' client spans say whom they asked, and which try each was (gatehouse.tracing).
    traced = upstream_call() if tracing_on() else None
    try:
        for _ in range(upstreams.tries):
            candidates = upstreams.candidates(order, failures=failures, out=out)
            if not candidates:
                break
            taken = await upstreams.take_async(candidates, tokens=tokens, seconds=seconds)
            if taken is None:
                tried.append(Attempt(", ".join(upstream.name for upstream in candidates), AT_LIMIT))
                break
            upstream, lease = taken
            if traced is not None:
                traced.target(base_url=upstream.engine.base_url, model=upstream.engine.model)
            result: _T | _NotAnswered = _NOT_ANSWERED
            try:
                result = await _try(upstream, attempt, failures=failures, out=out, tried=tried)
            finally:
                if lease is not NO_LEASE:
                    cost = 0 if isinstance(result, _NotAnswered) else used(result)
                    await deployment_give_back_async(lease=lease, tokens=cost)
            if not isinstance(result, _NotAnswered):
                return result
    finally:
        if traced is not None:
            traced.end()
    raise RemoteUnavailable(_nobody_answered(tried))


class _NotAnswered:
    """A try that failed before any answer: the next may be tried."""


_NOT_ANSWERED = _NotAnswered()


async def _try(
    upstream: Upstream,
    attempt: Callable[[OpenAICompatibleEngine], Awaitable[_T]],
    *,
    failures: Counter[str],
    out: set[str],
    tried: list[Attempt],
) -> _T | _NotAnswered:
    """One try on `upstream`: its answer, or _NOT_ANSWERED where the next may be tried."""
    engine = upstream.engine
    try:
        # Checked at every call, not only at registration: a name can resolve elsewhere later.
        await outbound_url_check_async(url=engine.url)
    except OutboundUrlRefused as refused:
        tried.append(Attempt(upstream.name, f"{_ADDRESS_REFUSED}: {refused}"))
        out.add(upstream.name)
        return _NOT_ANSWERED
    if not engine.breaker.allow():
        tried.append(Attempt(upstream.name, _CIRCUIT_OPEN))
        out.add(upstream.name)
        return _NOT_ANSWERED
    if failures[upstream.name]:
        await asyncio.sleep(engine.retry_backoff * 2 ** (failures[upstream.name] - 1))
    try:
        result = await attempt(engine)
    except _RetryBeforeFirstToken as exc:
        engine.breaker.failed()
        failures[upstream.name] += 1
        tried.append(Attempt(upstream.name, str(exc)))
        return _NOT_ANSWERED
    except RemoteUnavailable as exc:
        engine.breaker.failed()
        tried.append(Attempt(upstream.name, str(exc)))
        raise
    engine.breaker.succeeded()
    tried.append(Attempt(upstream.name))
    return result


_ADDRESS_REFUSED = "the upstream's address is refused"
_CIRCUIT_OPEN = "circuit open"


def _nobody_answered(tried: list[Attempt]) -> str:
    errors = [attempt.error or "" for attempt in tried]
    if errors and errors[-1] == AT_LIMIT and all(error in (AT_LIMIT, _CIRCUIT_OPEN) for error in errors):
        return AT_LIMIT
    if all(error == _CIRCUIT_OPEN for error in errors):
        return "the upstream is failing; requests are paused for a moment (circuit open)"
    called = [error for error in errors if error != _CIRCUIT_OPEN and not error.startswith(_ADDRESS_REFUSED)]
    if not called:
        return next(error for error in errors if error.startswith(_ADDRESS_REFUSED))
    return f"the upstream did not answer after {len(called)} tries: {called[-1]}"


@dataclass(frozen=True)
class _Asked:
    """What the answer may hold beyond text: calls to these tools, if anyone reads them."""

    tool_names: frozenset[str]
    tools: bool


async def _stream_once(
    engine: OpenAICompatibleEngine,
    body: dict[str, Any],
    *,
    params: GenerationParams,
    prompt: _PromptSize,
    outlet: _Outlet,
    asked: _Asked,
) -> GenerationResult:
    stream = _SseStream(
        on_token=outlet.texts,
        max_pieces=params.max_tokens,
        on_tool_calls=outlet.tool_calls if asked.tools else None,
        tool_names=asked.tool_names,
        legacy=params.raw_prompt,
        on_logprobs=outlet.token_logprobs if outlet.logprobs else None,
    )
    ended = False
    try:
        async with asyncio.timeout(params.max_seconds or None):
            async with await remote_post(engine, body, url=engine.url_for(params)) as response:
                _status_check(response.status)
                chunks = response.content.iter_any()
                ended = await _relay(chunks, stream=stream, outlet=outlet)
                if ended:
                    await _rest_drain(chunks)
    except aiohttp.ClientError as exc:  # before TimeoutError: a socket's read timeout is both
        if stream.chunks == 0:
            raise _RetryBeforeFirstToken(type(exc).__name__) from exc
        raise RemoteUnavailable(f"the upstream connection failed mid-stream ({type(exc).__name__})") from exc
    except TimeoutError:
        if not ended:
            stream.finish = FinishReason.LENGTH  # the model's wall-clock limit: as much as it wrote
    await outlet.flush()
    if not ended and stream.finish is None:
        # The connection closed without `[DONE]` or a finish reason: a cut-off answer.
        if stream.chunks == 0:
            raise _RetryBeforeFirstToken("the stream ended before any token")
        raise RemoteUnavailable("the upstream connection failed mid-stream (the stream ended early)")
    return stream.result(max_tokens=params.max_tokens, prompt=prompt)


async def _relay(chunks: AsyncIterator[bytes], *, stream: _SseStream, outlet: _Outlet) -> bool:
    """Feed the stream's lines to `stream`, handing the texts of each read to `deliver`
    together; True once `[DONE]` was read. Stops early at an overflow (more pieces than
    `max_tokens`: an upstream that ignores it is not read, nor passed on, past it)."""
    buffer = b""
    async for data in chunks:
        buffer += data
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if stream.feed(line.decode("utf-8", "replace").rstrip("\r")):
                await outlet.flush()
                return True
            if stream.overflowed:
                stream.finish = FinishReason.LENGTH
                await outlet.flush()
                return False
        await outlet.flush()
    return False


# What an upstream may still send after `[DONE]`, and how long it may take to end its response,
# before its connection is dropped instead of kept.
_AFTER_DONE_BYTES = 4096
_AFTER_DONE_SECONDS = 0.25


async def _rest_drain(chunks: AsyncIterator[bytes]) -> None:
    """Read a response on from `[DONE]` to its own end, which usually came in the same read:
    a connection left mid-response is closed rather than kept for the next request. An
    upstream that goes on talking, or is slow to end, is cut off (its connection closed)."""
    read = 0
    try:
        async with asyncio.timeout(_AFTER_DONE_SECONDS):
            async for data in chunks:
                read += len(data)
                if read > _AFTER_DONE_BYTES:
                    return
    except (TimeoutError, aiohttp.ClientError):
        return  # the answer was whole; only its connection is lost


async def remote_whole_read(
    engine: OpenAICompatibleEngine, body: dict[str, Any], *, url: str, max_seconds: float | None
) -> bytes:
    """POST `body` to `url` and read the whole answer's body, within `max_seconds`; a failure
    before any answer may be retried, a refusal (status) may not."""
    try:
        async with asyncio.timeout(max_seconds or None), await remote_post(engine, body, url=url) as response:
            status, content = response.status, await response.read()
    except aiohttp.ClientError as exc:  # before TimeoutError: a socket's read timeout is both
        raise _RetryBeforeFirstToken(type(exc).__name__) from exc
    except TimeoutError:
        raise RemoteUnavailable("the upstream did not answer within the model's time limit") from None
    _status_check(status)
    return content


async def _whole_once(
    engine: OpenAICompatibleEngine,
    body: dict[str, Any],
    *,
    params: GenerationParams,
    prompt: _PromptSize,
    outlet: _Outlet,
    asked: _Asked,
) -> GenerationResult:
    content = await remote_whole_read(
        engine, body, url=engine.url_for(params), max_seconds=params.max_seconds
    )
    try:
        answer = orjson.loads(content)
        choice = answer["choices"][0]
        message = choice.get("message") or {}
        text = (choice.get("text") if params.raw_prompt else message.get("content")) or ""
        raw_calls = message.get("tool_calls")
        raw_logprobs = choice.get("logprobs")
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError):
        raise RemoteMalformed("the upstream sent a malformed answer") from None
    if not isinstance(text, str):
        raise RemoteMalformed("the upstream sent a malformed answer")
    calls = tool_calls_read(raw_calls, names=asked.tool_names) if asked.tools and raw_calls else []
    if calls is None:
        raise RemoteMalformed("the upstream sent a malformed tool call")
    entries = logprobs_content_read(raw_logprobs) if outlet.logprobs else []
    if entries is None:
        raise RemoteMalformed("the upstream sent malformed log probabilities")
    if entries:
        outlet.token_logprobs(entries)
    if text or entries:
        outlet.texts([text])
    if calls:
        outlet.tool_calls([{"index": index, **call} for index, call in enumerate(calls)])
    await outlet.flush()
    usage = answer.get("usage") if isinstance(answer.get("usage"), dict) else None
    # Each token is at least one byte: the answer's bytes bound what it can have cost.
    completion = _reported_count(usage, "completion_tokens")
    written = len(text.encode()) + sum(len(orjson.dumps(call["function"])) for call in calls)
    completion = min(written, params.max_tokens) if completion is None else completion
    prompt_tokens = _reported_count(usage, "prompt_tokens")
    return GenerationResult(
        prompt_tokens=min(
            prompt.content_bytes if prompt_tokens is None else prompt_tokens, prompt.most_tokens
        ),
        completion_tokens=min(completion, params.max_tokens),
        finish_reason=_FINISH.get(str(choice.get("finish_reason")), FinishReason.STOP),
    )

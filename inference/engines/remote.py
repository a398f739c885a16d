"""The remote engine: an OpenAI-compatible server (vLLM, TGI, Ollama, llama.cpp) over HTTP.

Streaming chat completions with connect and read timeouts, retries only before the first
token (after it, a retry would send the client a second, different answer), and a circuit
breaker per upstream so a dead server is failed fast instead of waited on by every request.

The upstream's address passes the outbound guard (gatehouse.outbound) before every call, and
redirects are never followed. Its reported usage is believed only within what the request
could have used.
"""

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from gatehouse.outbound import OutboundUrlRefused, outbound_url_check
from inference.engines.base import (
    ChatMessage,
    FinishReason,
    GenerationParams,
    GenerationResult,
    StopCheck,
    TokenCallback,
    TokenLogprob,
)
from inference.engines.circuit_breaker import CircuitBreaker
from inference.engines.logprobs import logprobs_content_read
from inference.engines.tool_calls import tool_call_deltas_read

RETRYABLE_STATUS = {429, 500, 502, 503, 504}


class RemoteUnavailable(Exception):
    """The upstream could not serve this request (down, refusing, timing out, circuit open)."""


class RemoteMalformed(RemoteUnavailable):
    """The upstream answered, but not in the shape of an OpenAI chat completion."""


class _RetryBeforeFirstToken(Exception):
    pass


_FINISH = {"stop": FinishReason.STOP, "length": FinishReason.LENGTH, "tool_calls": FinishReason.TOOL_CALLS}


class OpenAICompatibleEngine:
    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        max_retries: int = 2,
        retry_backoff: float = 0.2,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + "/chat/completions"
        self.completions_url = base_url.rstrip("/") + "/completions"  # text completions
        self.embeddings_url = base_url.rstrip("/") + "/embeddings"
        self.model = model
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout = httpx.Timeout(read_timeout, connect=connect_timeout)
        self.max_retries = max_retries
        self.retry_backoff = retry_backoff
        self.breaker = breaker or CircuitBreaker()
        # One client per engine, shared by its threads: connections are kept alive between
        # generations, and the TLS context (loading the CA bundle costs milliseconds of CPU)
        # is built once, not per request.
        # Never follow a redirect: it would lead past the outbound guard.
        self._client = httpx.Client(timeout=self.timeout, headers=self.headers, follow_redirects=False)

    def close(self) -> None:
        self._client.close()

    def url_for(self, params: GenerationParams) -> str:
        return self.completions_url if params.raw_prompt else self.url

    def _body(self, messages: list[ChatMessage], params: GenerationParams) -> dict[str, Any]:
        """What the upstream is asked: a chat completion, or for a raw prompt a text completion."""
        body: dict[str, Any] = {
            "model": self.model,
            **(
                {"prompt": messages[0].content}
                if params.raw_prompt
                else {"messages": [{"role": m.role, "content": m.content} for m in messages]}
            ),
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if params.stop:
            body["stop"] = list(params.stop)
        if params.seed is not None:
            body["seed"] = params.seed
        if params.logprobs is not None:
            body.update(logprobs=True, top_logprobs=params.logprobs)
        return body

    def generate_stream(
        self,
        *,
        messages: list[ChatMessage],
        params: GenerationParams,
        on_token: TokenCallback,
        should_stop: StopCheck,
        arriving_with: int = 0,  # one upstream request per call: nothing to gather
    ) -> GenerationResult:
        try:
            # Checked at every call, not only at registration: a name can resolve elsewhere later.
            outbound_url_check(url=self.url)
        except OutboundUrlRefused as refused:
            raise RemoteUnavailable(f"the upstream's address is refused: {refused}") from None
        body = self._body(messages, params)
        prompt = _PromptSize(
            content_bytes=sum(len(message.content.encode()) for message in messages), messages=len(messages)
        )
        for attempt in range(self.max_retries + 1):
            if not self.breaker.allow():
                raise RemoteUnavailable(
                    "the upstream is failing; requests are paused for a moment (circuit open)"
                )
            try:
                result = self._stream_once(
                    body, params=params, prompt=prompt, on_token=on_token, should_stop=should_stop
                )
            except _RetryBeforeFirstToken as exc:
                self.breaker.failed()
                if attempt == self.max_retries:
                    raise RemoteUnavailable(
                        f"the upstream did not answer after {attempt + 1} tries: {exc}"
                    ) from None
                time.sleep(self.retry_backoff * 2**attempt)
            except RemoteUnavailable:
                self.breaker.failed()
                raise
            else:
                self.breaker.succeeded()
                return result
        raise AssertionError("unreachable")  # pragma: no cover

    def _stream_once(
        self,
        body: dict[str, Any],
        *,
        params: GenerationParams,
        prompt: "_PromptSize",
        on_token: TokenCallback,
        should_stop: StopCheck,
    ) -> GenerationResult:
        deadline = time.monotonic() + params.max_seconds if params.max_seconds else None
        delivery = _Delivery(on_token)
        stream = _SseStream(on_token=delivery.push, max_pieces=params.max_tokens, legacy=params.raw_prompt)
        stop = _ThrottledStopCheck(should_stop)
        ended = False
        try:
            with self._client.stream("POST", self.url_for(params), json=body) as response:
                _status_check(response.status_code)
                for line in response.iter_lines():
                    if stop():
                        stream.finish = FinishReason.CANCELLED
                        break  # leaving the block closes the stream: the upstream aborts
                    if deadline is not None and time.monotonic() > deadline:
                        stream.finish = FinishReason.LENGTH
                        break
                    if stream.feed(line):
                        ended = True
                        break
                    if stream.overflowed:
                        # Each piece is at least one token: an upstream that ignores
                        # max_tokens is not read, nor passed on, past it.
                        stream.finish = FinishReason.LENGTH
                        break
        except httpx.TransportError as exc:
            delivery.close(reraise=False)
            if stream.chunks == 0:
                raise _RetryBeforeFirstToken(type(exc).__name__) from exc
            raise RemoteUnavailable(
                f"the upstream connection failed mid-stream ({type(exc).__name__})"
            ) from exc
        except BaseException:
            delivery.close(reraise=False)
            raise
        # Every text reaches the reader before the result (and so `done`) does.
        delivery.close(reraise=True)
        if not ended and stream.finish is None:
            # The connection closed without `[DONE]` or a finish reason: a cut-off answer.
            if stream.chunks == 0:
                raise _RetryBeforeFirstToken("the stream ended before any token")
            raise RemoteUnavailable("the upstream connection failed mid-stream (the stream ended early)")
        return stream.result(max_tokens=params.max_tokens, prompt=prompt)


def _status_check(status: int) -> None:
    """Refuse an answer that is not a stream: errors, and redirects (never followed)."""
    if status in RETRYABLE_STATUS:
        raise _RetryBeforeFirstToken(f"HTTP {status}")
    if status >= 400:  # noqa: PLR2004 - HTTP client errors
        raise RemoteUnavailable(f"the upstream refused the request (HTTP {status})")
    if status >= 300:  # noqa: PLR2004 - a redirect would lead past the outbound guard
        raise RemoteUnavailable(
            f"the upstream answered with a redirect (HTTP {status}), which is not followed"
        )


# How often the stream asks whether it was cancelled (a cache read: Redis in production).
_CANCEL_POLL_SECONDS = 0.02
# Texts waiting for a slow reader, at most; past it the upstream is read no faster than the
# reader takes them (back-pressure, bounded memory).
_MAX_PENDING_TEXTS = 4096


class _ThrottledStopCheck:
    def __init__(self, should_stop: StopCheck) -> None:
        self._should_stop = should_stop
        self._next = 0.0

    def __call__(self) -> bool:
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + _CANCEL_POLL_SECONDS
        return self._should_stop()


class _Delivery:
    """Hands the upstream's texts to `on_token` from a thread of its own, all that queued up
    since the last call in one call.

    Reading the upstream never waits on the hop to the client (the channel layer, a round
    trip per call), and that hop is paid per call, not per token: the same coalescing the
    local engine's batches give. The first error from `on_token` (the reader is gone) is
    raised to the stream's thread on its next text, and by `close`.
    """

    def __init__(self, on_token: TokenCallback) -> None:
        self._on_token = on_token
        self._pending: list[str] = []
        self._closed = False
        self._changed = threading.Condition()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="gatehouse-remote-delivery", daemon=True)
        self._thread.start()

    def push(self, texts: list[str]) -> None:
        with self._changed:
            while len(self._pending) >= _MAX_PENDING_TEXTS and self.error is None:
                self._changed.wait()
            if self.error is not None:
                raise self.error
            self._pending.extend(texts)
            self._changed.notify_all()

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._pending and not self._closed:
                    self._changed.wait()
                if not self._pending:
                    return
                texts, self._pending = self._pending, []
                self._changed.notify_all()
            try:
                self._on_token(texts)
            except BaseException as exc:  # noqa: BLE001 - handed to the stream's thread
                with self._changed:
                    self.error = exc
                    self._pending.clear()
                    self._changed.notify_all()
                return

    def close(self, *, reraise: bool) -> None:
        """Deliver what is pending, stop the thread; raise a delivery error if asked to."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        self._thread.join()
        if reraise and self.error is not None:
            raise self.error


# Tokens a chat template may add per message (role markers, separators), generously.
_TEMPLATE_TOKENS_PER_MESSAGE = 16


@dataclass(frozen=True)
class _PromptSize:
    content_bytes: int
    messages: int

    @property
    def most_tokens(self) -> int:
        # A token is at least one byte; the template adds its markers around each message.
        return self.content_bytes + _TEMPLATE_TOKENS_PER_MESSAGE * (self.messages + 1)


def _delta(choice: Any, *, legacy: bool) -> dict[str, Any] | None:
    """A streamed choice's new part (a text completion's `text` read as a chat delta's
    `content`); None when the choice is not an object."""
    if not isinstance(choice, dict):
        return None
    if legacy:
        return {"content": choice.get("text")}
    delta = choice.get("delta") or {}
    return delta if isinstance(delta, dict) else None


def _reported_count(usage: dict[str, Any] | None, name: str) -> int | None:
    """A count the upstream reported, if it is one (a non-negative integer); else None."""
    value = usage.get(name) if usage else None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


@dataclass
class _SseStream:
    """The state of one server-sent-events chat completion stream.

    Pieces of tool calls go to `on_tool_calls` (each chunk's counted as a piece, as a text
    is); without it (nobody offered tools) they are not read.
    """

    on_token: Callable[[list[str]], None]
    max_pieces: int
    on_tool_calls: Callable[[list[dict[str, Any]]], None] | None = None
    # Each chunk's token log probabilities (where they were asked for), before its text.
    on_logprobs: Callable[[list[TokenLogprob]], None] | None = None
    tool_names: frozenset[str] = frozenset()
    # A text completion's stream: each choice's `text`, not a `delta`.
    legacy: bool = False
    chunks: int = 0
    finish: FinishReason | None = None
    usage: dict[str, Any] | None = None
    # The upstream sent more pieces than max_tokens allows (the extra is not passed on).
    overflowed: bool = False

    def feed(self, line: str) -> bool:
        """Take one line of the stream; True at its end (`data: [DONE]`)."""
        if not line.startswith("data:"):
            return False
        data = line[len("data:") :].strip()
        if data == "[DONE]":
            return True
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise RemoteMalformed("the upstream sent a malformed stream") from exc
        choices = chunk.get("choices") if isinstance(chunk, dict) else None
        if not isinstance(choices, list | None):
            raise RemoteMalformed("the upstream sent a malformed stream")
        usage = chunk.get("usage")
        self.usage = usage if isinstance(usage, dict) and usage else self.usage
        for choice in choices or []:
            delta = _delta(choice, legacy=self.legacy)
            text = delta.get("content") or "" if isinstance(delta, dict) else None
            if not isinstance(choice, dict) or not isinstance(delta, dict) or not isinstance(text, str):
                raise RemoteMalformed("the upstream sent a malformed stream")
            if self.on_logprobs is not None and choice.get("logprobs") is not None:
                self.on_logprobs(self._logprobs(choice["logprobs"]))
            self._piece_take(text, self.on_token)
            if self.on_tool_calls is not None and delta.get("tool_calls"):
                self._piece_take(self._tool_call_deltas(delta["tool_calls"]), self.on_tool_calls)
            if choice.get("finish_reason"):
                self.finish = _FINISH.get(choice["finish_reason"], FinishReason.STOP)
        return False

    def _piece_take(self, piece: Any, deliver: Callable[[list[Any]], None]) -> None:
        if piece and self.chunks >= self.max_pieces:
            self.overflowed = True
        elif piece:
            deliver([piece] if isinstance(piece, str) else piece)
            self.chunks += 1

    def _logprobs(self, raw: Any) -> list[TokenLogprob]:
        entries = logprobs_content_read(raw)
        if entries is None:
            raise RemoteMalformed("the upstream sent malformed log probabilities")
        return entries

    def _tool_call_deltas(self, raw: Any) -> list[dict[str, Any]]:
        deltas = tool_call_deltas_read(raw, names=self.tool_names)
        if deltas is None:
            raise RemoteMalformed("the upstream sent a malformed tool call")
        return deltas

    def result(self, *, max_tokens: int, prompt: _PromptSize) -> GenerationResult:
        """The usage to charge: the upstream's figures where they are possible.

        Completion tokens lie between the pieces streamed (each is at least one token) and
        `max_tokens`; prompt tokens between 0 and the prompt's bytes plus the template's
        markers. A missing or impossible figure (negative, not an integer) is replaced by what
        was seen: each piece one token, each prompt byte one token. A cancelled stream is
        charged the pieces it delivered.
        """
        reported = self.usage if self.finish != FinishReason.CANCELLED else None
        completion = _reported_count(reported, "completion_tokens")
        completion = self.chunks if completion is None else max(completion, self.chunks)
        prompt_tokens = _reported_count(self.usage, "prompt_tokens")
        if prompt_tokens is None:
            prompt_tokens = prompt.content_bytes
        return GenerationResult(
            prompt_tokens=min(prompt_tokens, prompt.most_tokens),
            completion_tokens=min(completion, max_tokens),
            finish_reason=self.finish or FinishReason.STOP,
        )

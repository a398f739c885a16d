"""A small OpenAI-compatible streaming server on loopback, with switchable misbehaviour."""

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# A held request is answered at the latest after this long, so a test that forgets to
# release it still ends.
HANG_LIMIT_SECONDS = 60.0


class FakeUpstream:
    """`mode`: ok | fail_first_<n> | always_503 | hang | hold | reset_mid_stream | bad_request
    | redirect:<url> | linger_after_done.

    `usage` replaces the usage the stream reports (None: it reports none); unset, it is exact.
    In `hang` mode a request is held, unanswered, until the test calls `release()` (or the
    server stops), then refused with 503; in `hold` mode it is then answered; `held` counts the requests held and `answered_after_hold` those answered
    since, so a test can show that its client gave up before the upstream said anything.
    In `linger_after_done` mode a stream sends `[DONE]` and then keeps its connection open,
    saying nothing more, until `release()`.

    A request with `logprobs` true gets each word's entry (logprob -0.5, and `top_logprobs`
    alternatives "alt<i>" at -1 - i), in each chunk and in a whole answer; `logprobs`, where
    set, replaces every choice's `logprobs` object.

    `keep_alive` speaks HTTP/1.1 (streams chunked, connections kept between requests);
    `connections` counts the connections clients opened.

    `tool_calls` (whole calls: id, type, function name and arguments) makes every answer
    call them instead of writing the words: streamed as OpenAI streams them (each call's
    id and name first, then its arguments in two pieces), finishing with `tool_calls`.
    """

    def __init__(self) -> None:
        self.mode = "ok"
        self.words = [f"word{index} " for index in range(8)]
        self.delay = 0.0
        self.usage: dict[str, Any] | None = {}
        self.requests: list[dict[str, Any]] = []
        self.held = 0
        self.answered_after_hold = 0
        self.released = threading.Event()
        self.keep_alive = False
        self.connections = 0
        self.tool_calls: list[dict[str, Any]] | None = None
        # The alternatives the last request asked for per token (None: no logprobs asked).
        self.top_logprobs: int | None = None
        self.embeddings: list[Any] | None = None
        self.logprobs: Any = None
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            @property  # type: ignore[override]
            def protocol_version(self) -> str:
                return "HTTP/1.1" if upstream.keep_alive else "HTTP/1.0"

            def setup(self) -> None:
                super().setup()
                upstream.connections += 1

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
                """Quiet: the tests read `upstream.requests` instead."""

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                upstream.requests.append(
                    {"body": body, "authorization": self.headers.get("Authorization"), "path": self.path}
                )
                if self.path.endswith("/embeddings"):
                    upstream.embed(self, body)
                    return
                legacy = not self.path.endswith("/chat/completions")
                upstream.top_logprobs = body.get("top_logprobs", 0) if body.get("logprobs") else None
                upstream.respond(self, len(upstream.requests), stream=bool(body.get("stream")), legacy=legacy)

        return Handler

    def _chunk(self, handler: BaseHTTPRequestHandler, payload: dict[str, Any] | str) -> None:
        data = payload if isinstance(payload, str) else json.dumps(payload)
        self._write(handler, f"data: {data}\n\n".encode())

    def _write(self, handler: BaseHTTPRequestHandler, data: bytes) -> None:
        handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if self.keep_alive else data)
        handler.wfile.flush()

    def release(self) -> None:
        """Let held (`hang`) requests be answered."""
        self.released.set()

    def _logprobs_object(self, words: list[str]) -> Any:
        """The `logprobs` of a choice that wrote `words` (None where none were asked for)."""
        if self.logprobs is not None:
            return self.logprobs
        if self.top_logprobs is None:
            return None
        alternatives = [
            {"token": f"alt{index}", "logprob": -1.0 - index, "bytes": list(f"alt{index}".encode())}
            for index in range(self.top_logprobs)
        ]
        return {
            "content": [
                {"token": word, "logprob": -0.5, "bytes": list(word.encode()), "top_logprobs": alternatives}
                for word in words
            ],
            "refusal": None,
        }

    def _exact_usage(self) -> dict[str, int]:
        return {
            "prompt_tokens": 11,
            "completion_tokens": len(self.words),
            "total_tokens": 11 + len(self.words),
        }

    def _whole(self, handler: BaseHTTPRequestHandler, *, legacy: bool) -> None:
        """A whole answer (`stream` false): the words as one message (or one text)."""
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self.words)}
        if self.tool_calls is not None:
            message = {"role": "assistant", "content": None, "tool_calls": self.tool_calls}
        choice: dict[str, Any] = {
            "index": 0,
            "message": message,
            "logprobs": self._logprobs_object(self.words),
            "finish_reason": "stop" if self.tool_calls is None else "tool_calls",
        }
        if legacy:
            choice = {"index": 0, "text": "".join(self.words), "finish_reason": "stop"}
        answer: dict[str, Any] = {
            "object": "text_completion" if legacy else "chat.completion",
            "choices": [choice],
        }
        if self.usage is not None:
            answer["usage"] = self.usage or self._exact_usage()
        data = json.dumps(answer).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _deltas(self) -> list[dict[str, Any]]:
        if self.tool_calls is None:
            return [{"content": word} for word in self.words]
        deltas: list[dict[str, Any]] = []
        for index, call in enumerate(self.tool_calls):
            function, arguments = call["function"], call["function"]["arguments"]
            half = len(arguments) // 2
            opening = {"name": function["name"], "arguments": ""}
            deltas.append(
                {"tool_calls": [{"index": index, "id": call["id"], "type": "function", "function": opening}]}
            )
            for piece in (arguments[:half], arguments[half:]):
                deltas.append({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
        return deltas

    def embed(self, handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        """One vector per input (its length, its first character's code, 0.5), in reverse
        order with their indexes; `embeddings` replaces the answer's data."""
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = (
            self.embeddings
            or [
                {
                    "object": "embedding",
                    "index": index,
                    "embedding": [float(len(text)), float(ord(text[0])), 0.5],
                }
                for index, text in enumerate(inputs)
            ][::-1]
        )
        answer: dict[str, Any] = {"object": "list", "data": data, "model": body.get("model")}
        if self.usage is not None:
            answer["usage"] = self.usage or {
                "prompt_tokens": 3 * len(inputs),
                "total_tokens": 3 * len(inputs),
            }
        encoded = json.dumps(answer).encode()
        handler.send_response(200 if self.mode == "ok" else 503)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(encoded)))
        handler.end_headers()
        handler.wfile.write(encoded)

    def _hang_refused(self, handler: BaseHTTPRequestHandler, mode: str) -> bool:
        """After a hold: `hang` refuses (503), `hold` goes on to answer."""
        if mode != "hang":
            return False
        self.answered_after_hold += 1
        with suppress(OSError):  # the client has usually given up by now
            handler.send_response(503)
            handler.end_headers()
        return True

    def respond(
        self, handler: BaseHTTPRequestHandler, nth: int, *, stream: bool = True, legacy: bool = False
    ) -> None:
        """Answer the `nth` request: a chat completion, or with `legacy` a text completion."""
        mode = self.mode
        if refusal := _refusal_status(mode, nth):
            handler.send_response(refusal)
            handler.end_headers()
            return
        if mode.startswith("redirect:"):
            handler.send_response(307)
            handler.send_header("Location", mode.removeprefix("redirect:"))
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        if mode in ("hang", "hold"):
            self.held += 1
            self.released.wait(timeout=HANG_LIMIT_SECONDS)
            if self._hang_refused(handler, mode):
                return
            mode = "ok"  # held, then answered
        if not stream and mode != "reset_mid_stream":
            self._whole(handler, legacy=legacy)
            return
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        if self.keep_alive:
            handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        for index, delta in enumerate(self._deltas()):
            if mode == "reset_mid_stream" and index == 2:
                handler.connection.shutdown(2)  # drop the connection mid-answer
                return
            time.sleep(self.delay)
            part = {"text": delta["content"]} if legacy else {"delta": delta}
            if "content" in delta and not legacy:
                part["logprobs"] = self._logprobs_object([delta["content"]])
            self._chunk(handler, {"choices": [{"index": 0, **part, "finish_reason": None}]})
        finish = "stop" if self.tool_calls is None else "tool_calls"
        part = {"text": ""} if legacy else {"delta": {}}
        self._chunk(handler, {"choices": [{"index": 0, **part, "finish_reason": finish}]})
        if self.usage is not None:
            self._chunk(handler, {"choices": [], "usage": self.usage or self._exact_usage()})
        self._chunk(handler, "[DONE]")
        if mode == "linger_after_done":
            self.held += 1
            self.released.wait(timeout=HANG_LIMIT_SECONDS)
            self.answered_after_hold += 1
        if self.keep_alive:
            self._write(handler, b"")  # the last chunk: the response ends, the connection stays


def _refusal_status(mode: str, nth: int) -> int | None:
    """The status the `nth` request is refused with in `mode`, if it is refused at once."""
    if mode == "always_503" or (mode.startswith("fail_first_") and nth <= int(mode.rsplit("_", 1)[1])):
        return 503
    return 400 if mode == "bad_request" else None


@contextmanager
def fake_upstream() -> Iterator[FakeUpstream]:
    upstream = FakeUpstream()
    thread = threading.Thread(target=upstream.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield upstream
    finally:
        upstream.release()
        upstream.server.shutdown()
        upstream.server.server_close()


class _ShiftedClock:
    """The `time` module, with `monotonic()` running `offset` seconds ahead."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    def monotonic(self) -> float:
        return time.monotonic() + self.offset


def clock_advance(monkeypatch: Any, *, seconds: float) -> None:
    """Move the circuit breakers' clock (their pauses) `seconds` ahead, for the rest of the
    test, instead of waiting for the time to pass."""
    from inference.engines import circuit_breaker

    current = circuit_breaker.time
    offset = current.offset if isinstance(current, _ShiftedClock) else 0.0
    monkeypatch.setattr(circuit_breaker, "time", _ShiftedClock(offset + seconds))

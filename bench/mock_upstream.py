"""A mock OpenAI-compatible upstream: fixed latency, a fixed chunk stream, nothing else.

The baseline that P1 and P2 call directly and through Gatehouse (registered as a remote
model). Served by uvicorn in its own process:

    MOCK_LATENCY_MS=20 MOCK_CHUNKS=16 python -m uvicorn bench.mock_upstream:app --port 9000

A plain ASGI callable, so that the mock's own cost is as small and as constant as it can be.
"""

import asyncio
import json
import os
from typing import Any

LATENCY_SECONDS = float(os.environ.get("MOCK_LATENCY_MS", "20")) / 1000
CHUNKS = int(os.environ.get("MOCK_CHUNKS", "16"))
# One word per chunk; the reply is the same every time.
WORD = "token "


def _completion() -> bytes:
    return json.dumps(
        {
            "id": "mock-1",
            "object": "chat.completion",
            "created": 0,
            "model": "mock",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": WORD * CHUNKS},
                         "finish_reason": "length"}],
            "usage": {"prompt_tokens": 8, "completion_tokens": CHUNKS, "total_tokens": 8 + CHUNKS},
        }
    ).encode()  # fmt: skip


def _chunk(delta: dict[str, str], finish: str | None = None, usage: dict[str, int] | None = None) -> bytes:
    body: dict[str, Any] = {
        "id": "mock-1", "object": "chat.completion.chunk", "created": 0, "model": "mock",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }  # fmt: skip
    if usage is not None:
        body["usage"] = usage
    return b"data: " + json.dumps(body).encode() + b"\n\n"


async def request_body_read(receive: Any) -> bytes:
    """The whole body of an ASGI request (the floor reads its requests the same way)."""
    body = b""
    while True:
        message: dict[str, Any] = await receive()
        body += bytes(message.get("body", b""))
        if not message.get("more_body"):
            return body


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/v1/models":
        await _respond(send, 200, b'{"object": "list", "data": [{"id": "mock", "object": "model"}]}')
        return
    if scope["path"] != "/v1/chat/completions" or scope["method"] != "POST":
        await _respond(send, 404, b'{"error": {"message": "not found"}}')
        return
    request = json.loads(await request_body_read(receive) or b"{}")
    await asyncio.sleep(LATENCY_SECONDS)
    if not request.get("stream"):
        await _respond(send, 200, _completion())
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/event-stream")]})  # fmt: skip
    await send({"type": "http.response.body", "body": _chunk({"role": "assistant"}), "more_body": True})
    for _ in range(CHUNKS):
        await send({"type": "http.response.body", "body": _chunk({"content": WORD}), "more_body": True})
    usage = {"prompt_tokens": 8, "completion_tokens": CHUNKS, "total_tokens": 8 + CHUNKS}
    await send({"type": "http.response.body", "body": _chunk({}, "length", usage), "more_body": True})
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


async def _respond(send: Any, status: int, body: bytes) -> None:
    await send(
        {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": body})

"""The floor: a bare pass-through proxy, the least a Python proxy on this machine can cost.

A raw ASGI app (no Django, no framework) that `python -m bench` serves with uvicorn in its own
process, with the gateway's server flags, beside Gatehouse. It does what any proxy must and
nothing else: one shared `httpx.AsyncClient` (made at lifespan startup), a constant bearer
check (the Authorization header against a fixed token), and POST /v1/chat/completions relayed
to the upstream with the request body and the response bytes untouched: a streamed answer
(text/event-stream) is relayed chunk by chunk as it arrives, a whole answer whole. No
governance, no accounting, no logging of its own: every gateway figure is shown beside it.

`floor_app` also serves the governed floor (bench.governed_floor): the same relay with the
round trips that governing a request cannot skip around it.

    FLOOR_UPSTREAM=http://127.0.0.1:9000 FLOOR_TOKEN=secret \
        python -m uvicorn bench.floor:app --port 9001 --lifespan on
"""

import os
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from bench.mock_upstream import request_body_read

UPSTREAM = os.environ.get("FLOOR_UPSTREAM", "http://127.0.0.1:9000").rstrip("/")
EXPECTED_AUTHORIZATION = f"Bearer {os.environ.get('FLOOR_TOKEN', 'floor')}".encode()
PATH = "/v1/chat/completions"

_JSON = [(b"content-type", b"application/json")]
_state: dict[str, httpx.AsyncClient] = {}


ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


class Around:
    """What a floor does around its relay: nothing here; the governed floor's round trips in
    its subclass (bench.governed_floor)."""

    async def start(self) -> None:
        """At server startup (its connections)."""

    async def stop(self) -> None:
        """At server shutdown."""

    async def before(self) -> None:
        """Before the upstream is called."""

    async def after(self) -> None:
        """Once the upstream's answer is all read, before the client is told it ended."""


async def _lifespan(receive: Any, send: Any, around: Around) -> None:
    """Make the one shared client at startup, close it at shutdown."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
            _state["client"] = httpx.AsyncClient(timeout=httpx.Timeout(60, connect=5), limits=limits)
            await around.start()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if "client" in _state:
                await _state.pop("client").aclose()
            await around.stop()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _respond(send: Any, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": _JSON})
    await send({"type": "http.response.body", "body": body})


def _authorized(scope: dict[str, Any]) -> bool:
    return any(
        name == b"authorization" and value == EXPECTED_AUTHORIZATION for name, value in scope["headers"]
    )


async def _relay(body: bytes, send: Any, around: Around) -> None:
    """POST `body` upstream; relay the status, the content type and the bytes as they come,
    with `around`'s steps before the call and before the answer's end."""
    await around.before()
    client = _state["client"]
    request = client.build_request(
        "POST", UPSTREAM + PATH, content=body, headers={"content-type": "application/json"}
    )
    response = await client.send(request, stream=True)
    try:
        content_type = response.headers.get("content-type", "application/json").encode()
        headers = [(b"content-type", content_type)]
        if not content_type.startswith(b"text/event-stream"):
            whole = await response.aread()
            await around.after()
            await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
            await send({"type": "http.response.body", "body": whole})
            return
        await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
        async for chunk in response.aiter_raw():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await around.after()
        await send({"type": "http.response.body", "body": b""})
    finally:
        await response.aclose()


def floor_app(around: Around | None = None) -> ASGIApp:
    """The floor as an ASGI app, doing `around`'s steps around each relay (none by default)."""
    steps = around or Around()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send, steps)
            return
        if scope["type"] != "http":
            return
        if scope["path"] != PATH or scope["method"] != "POST":
            await _respond(send, 404, b'{"error": {"message": "not found"}}')
            return
        if not _authorized(scope):
            await _respond(send, 401, b'{"error": {"message": "invalid API key"}}')
            return
        await _relay(await request_body_read(receive), send, steps)

    return app


app = floor_app()

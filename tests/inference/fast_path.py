"""Helpers for tests of `/v1` requests served by the ASGI fast path against a remote model."""

from typing import Any

import httpx
import orjson

from accounts.models import User
from accounts.services.api_keys import api_key_create
from gatehouse.asgi import application
from inference.models import ModelVersion
from inference.services import model_register, model_version_promote, model_version_register_remote
from tests.fake_openai import FakeUpstream

URL = "/v1/chat/completions"


def remote_model_register(alice: User, upstream: FakeUpstream) -> ModelVersion:
    """`remote-model`, open to all, served by `upstream` as `upstream-model` (version r1)."""
    model = model_register(name="remote-model", open_to_all=True, actor=alice)
    version = model_version_register_remote(
        model=model, label="r1", base_url=upstream.base_url, remote_model="upstream-model", actor=alice
    )
    return model_version_promote(version=version, actor=alice)


def api_key_mint(user: User, scopes: tuple[str, ...] = ("chat",)) -> str:
    return api_key_create(user=user, name="fast", scopes=scopes, actor=user)[1]


async def v1_post(body: Any, *, key: str | None, url: str = URL, **headers: str) -> httpx.Response:
    """POST `body` (bytes, or JSON-encoded) through the whole ASGI application."""
    sent = {"Content-Type": "application/json", **headers}
    if key is not None:
        sent["Authorization"] = f"Bearer {key}"
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        return await client.post(url, content=content, headers=sent)


def sse_events(response: httpx.Response) -> list[Any]:
    """A streamed answer's events: JSON objects, and the literal `[DONE]`."""
    events = response.text.strip().split("\n\n")
    return [
        data if (data := event.removeprefix("data: ")) == "[DONE]" else orjson.loads(data) for event in events
    ]

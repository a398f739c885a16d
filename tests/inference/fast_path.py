"""Helpers for tests of `/v1` requests served by the ASGI fast path against a remote model."""

import random
from typing import Any

import httpx
import orjson

from accounts.models import User
from accounts.services.api_keys import api_key_create
from gatehouse.asgi import application
from inference.engines.loader import engine_for_version, engines_clear
from inference.engines.remote_deployments import RemoteDeployments
from inference.models import Model, ModelVersion
from inference.services import (
    model_deployment_add,
    model_register,
    model_serving_update,
    model_version_promote,
    model_version_register_remote,
)
from tests.fake_openai import FakeUpstream

URL = "/v1/chat/completions"


def remote_model_register(alice: User, upstream: FakeUpstream) -> ModelVersion:
    """`remote-model`, open to all, served by `upstream` as `upstream-model` (version r1)."""
    model = model_register(name="remote-model", open_to_all=True, actor=alice)
    version = model_version_register_remote(
        model=model, label="r1", base_url=upstream.base_url, remote_model="upstream-model", actor=alice
    )
    return model_version_promote(version=version, actor=alice)


def remote_model_deployed(
    alice: User,
    first: FakeUpstream,
    second: FakeUpstream | None,
    *,
    routing: str = Model.Routing.WEIGHTED,
    weights: tuple[int, int] = (1, 1),
    first_limits: dict[str, int] | None = None,
) -> None:
    """`remote-model` in production, served by `first` (with `first_limits`) and `second` (if
    given) with `weights`, routed as `routing` says."""
    version = remote_model_register(alice, first)
    version = ModelVersion.objects.get(pk=version.pk)
    version.status = ModelVersion.Status.STAGING  # back to staging to change its deployments
    version.save(update_fields=["status"])
    version.deployments.update(weight=weights[0], **(first_limits or {}))
    if second is not None:
        model_deployment_add(
            version=version,
            base_url=second.base_url,
            remote_model="upstream-model",
            weight=weights[1],
            actor=alice,
        )
    model_version_promote(version=version, actor=alice)
    model_serving_update(model=version.model, changes={"routing": routing}, actor=alice)
    engines_clear()
    # Seeded, so that a test relying on weights (1000 to 1: the first nearly always first)
    # never meets the 1-in-1001 other order.
    remote_model_engine().rng = random.Random(0)  # noqa: S311 - repeatable; its first 200 draws are under 0.997


def remote_model_engine() -> RemoteDeployments:
    """The engine that serves `remote-model`'s requests in this process (the loader's cache)."""
    version = (
        ModelVersion.objects.select_related("model")
        .prefetch_related("deployments")
        .get(model__name="remote-model")
    )
    engine = engine_for_version(version=version)
    assert isinstance(engine, RemoteDeployments)
    return engine


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

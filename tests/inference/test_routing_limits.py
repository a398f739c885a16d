"""Routing by load: least-busy routing, and each deployment's own limits (calls at once, tokens
a minute), counted across processes (Redis on the production profile, this process on the
embedded one). Upstreams in `hold` mode keep every call in flight until the test lets go, so
the counts are exact, not timing-dependent."""

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from channels.db import database_sync_to_async
from django.test import override_settings

from accounts.models import User
from audit.models import AuditEvent
from inference.engines.deployment_load import deployment_in_flight, deployment_key
from inference.models import Model
from tests.fake_openai import FakeUpstream
from tests.inference.fast_path import api_key_mint, remote_model_deployed, v1_post
from tests.waiting import eventually

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("inference_backend"),
]


async def _until(condition: Callable[[], bool]) -> None:
    await eventually(lambda: True if condition() else None, seconds=20)


def _body(**overrides: Any) -> dict[str, Any]:
    return {"model": "remote-model", "messages": [{"role": "user", "content": "hi"}], **overrides}


async def _concurrently(count: int, key: str, *holding: FakeUpstream) -> list[httpx.Response]:
    """`count` requests at once; answered once all are in flight (held by `holding`)."""
    requests = [asyncio.ensure_future(v1_post(_body(), key=key)) for _ in range(count)]
    await _until(lambda: sum(server.held for server in holding) == count)
    for server in holding:
        server.release()
    return list(await asyncio.gather(*requests))


def _in_flight(*servers: FakeUpstream) -> list[int] | None:
    return deployment_in_flight(
        keys=[deployment_key(base_url=server.base_url, remote_model="upstream-model") for server in servers]
    )


@override_settings(GATEHOUSE_MAX_CONCURRENT_CHATS_PER_USER=32)
async def test_least_busy_routing_shares_calls_in_flight_evenly_whatever_the_weights(
    alice: User, bob: User, upstream: FakeUpstream, second: FakeUpstream
) -> None:
    # By weight nearly every call would go to the first; least-busy sends each to the emptier.
    await database_sync_to_async(remote_model_deployed)(
        alice, upstream, second, routing=Model.Routing.LEAST_BUSY, weights=(1000, 1)
    )
    upstream.mode = second.mode = "hold"
    key = await database_sync_to_async(api_key_mint)(bob)
    answers = await _concurrently(12, key, upstream, second)
    assert [answer.status_code for answer in answers] == [200] * 12
    assert (upstream.held, second.held) == (6, 6)
    assert await database_sync_to_async(_in_flight)(upstream, second) == [0, 0]  # every lease given back


@override_settings(GATEHOUSE_MAX_CONCURRENT_CHATS_PER_USER=32)
async def test_weighted_routing_passes_over_a_deployment_at_its_concurrency_limit(
    alice: User, bob: User, upstream: FakeUpstream, second: FakeUpstream
) -> None:
    await database_sync_to_async(remote_model_deployed)(
        alice, upstream, second, weights=(1000, 1), first_limits={"max_concurrency": 2}
    )
    upstream.mode = second.mode = "hold"
    key = await database_sync_to_async(api_key_mint)(bob)
    answers = await _concurrently(5, key, upstream, second)
    assert [answer.status_code for answer in answers] == [200] * 5
    assert (upstream.held, second.held) == (2, 3)
    assert await database_sync_to_async(_in_flight)(upstream, second) == [0, 0]


async def test_a_request_beyond_every_deployments_limit_is_a_503_saying_so(
    alice: User, bob: User, upstream: FakeUpstream
) -> None:
    await database_sync_to_async(remote_model_deployed)(
        alice, upstream, None, first_limits={"max_concurrency": 1}
    )
    upstream.mode = "hold"
    key = await database_sync_to_async(api_key_mint)(bob)
    first = asyncio.ensure_future(v1_post(_body(), key=key))
    await _until(lambda: upstream.held == 1)
    refused = await v1_post(_body(), key=key, **{"X-Request-ID": "at-limit"})
    assert refused.status_code == 503
    assert "127.0.0.1" not in refused.text
    record = await database_sync_to_async(AuditEvent.objects.get)(
        action="inference.failed", request_id="at-limit"
    )
    assert "at its limit" in record.metadata["reason"]
    upstream.release()
    assert (await first).status_code == 200
    assert len(upstream.requests) == 1  # the refused one never reached it
    assert (await v1_post(_body(), key=key)).status_code == 200  # its room came back


async def test_a_deployment_past_its_tokens_a_minute_is_passed_over(
    alice: User, bob: User, upstream: FakeUpstream, second: FakeUpstream
) -> None:
    # The fake reports 11 prompt tokens and one per word: 19 for the first answer.
    await database_sync_to_async(remote_model_deployed)(
        alice, upstream, second, weights=(1000, 1), first_limits={"tokens_per_minute": 25}
    )
    key = await database_sync_to_async(api_key_mint)(bob)
    assert (await v1_post(_body(), key=key)).status_code == 200
    assert (len(upstream.requests), len(second.requests)) == (1, 0)
    for _ in range(2):  # 19 used: a prompt of 40 bytes (10 tokens, as counted before the call) would pass 25
        answer = await v1_post(_body(messages=[{"role": "user", "content": "x" * 40}]), key=key)
        assert answer.json()["choices"][0]["message"]["content"] == "from the second"
    assert (len(upstream.requests), len(second.requests)) == (1, 2)

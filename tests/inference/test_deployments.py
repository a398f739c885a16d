"""Deployments: a remote version served by several upstreams, picked by weight, the next one
on a failure before any answer, an open breaker's skipped; every try in the one audit record."""

import random
from collections import Counter
from typing import Any

import pytest
from channels.db import database_sync_to_async

from accounts.models import User
from audit.models import AuditEvent
from inference.engines.base import ChatMessage, GenerationParams
from inference.engines.circuit_breaker import CircuitBreaker
from inference.engines.remote import OpenAICompatibleEngine
from inference.engines.remote_deployments import RemoteDeployments, Upstream
from inference.models import ModelVersion
from inference.services import model_deployment_add, model_version_stage
from tests.fake_openai import FakeUpstream
from tests.inference.fast_path import (
    api_key_mint,
    remote_model_deployed,
    remote_model_engine,
    remote_model_register,
    sse_events,
    v1_post,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("inference_backend")]


def _body(**overrides: Any) -> dict[str, Any]:
    return {"model": "remote-model", "messages": [{"role": "user", "content": "hi"}], **overrides}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_a_refusing_deployment_is_followed_by_the_next_in_one_record(
    alice: User, bob: User, upstream: FakeUpstream, second: FakeUpstream, stream: bool
) -> None:
    # All the weight on the first: it is always tried first, and always refuses.
    await database_sync_to_async(remote_model_deployed)(alice, upstream, second, weights=(1000, 1))
    upstream.mode = "always_503"
    key = await database_sync_to_async(api_key_mint)(bob)
    answer = await v1_post({**_body(stream=stream)}, key=key, **{"X-Request-ID": f"failover-{stream}"})
    assert answer.status_code == 200, answer.text
    if stream:
        chunks = [event for event in sse_events(answer) if event != "[DONE]" and event["choices"]]
        text = "".join(chunk["choices"][0]["delta"].get("content") or "" for chunk in chunks)
    else:
        text = answer.json()["choices"][0]["message"]["content"]
    assert text == "from the second"
    assert len(second.requests) == 1
    record = await database_sync_to_async(AuditEvent.objects.get)(
        action="inference.completed", request_id=f"failover-{stream}"
    )
    assert record.metadata["upstream"] == second.base_url
    assert record.metadata["attempts"] == [
        {"upstream": upstream.base_url, "outcome": "HTTP 503"},
        {"upstream": second.base_url, "outcome": "answered"},
    ]


async def test_when_every_deployment_fails_the_request_is_a_503_naming_none(
    alice: User, bob: User, upstream: FakeUpstream, second: FakeUpstream
) -> None:
    await database_sync_to_async(remote_model_deployed)(alice, upstream, second, weights=(1, 1))
    upstream.mode = second.mode = "always_503"
    key = await database_sync_to_async(api_key_mint)(bob)
    answer = await v1_post(_body(), key=key, **{"X-Request-ID": "all-down"})
    assert answer.status_code == 503
    assert "127.0.0.1" not in answer.text  # the upstreams are the operator's business
    record = await database_sync_to_async(AuditEvent.objects.get)(
        action="inference.failed", request_id="all-down"
    )
    assert {attempt["upstream"] for attempt in record.metadata["attempts"]} == {
        upstream.base_url,
        second.base_url,
    }


async def test_a_deployment_whose_breaker_is_open_is_not_called(
    alice: User, bob: User, upstream: FakeUpstream, second: FakeUpstream
) -> None:
    await database_sync_to_async(remote_model_deployed)(alice, upstream, second, weights=(1000, 1))
    upstreams = await database_sync_to_async(remote_model_engine)()
    first_breaker = next(u for u in upstreams.upstreams if u.name == upstream.base_url).engine.breaker
    for _ in range(first_breaker.threshold):
        first_breaker.failed()
    key = await database_sync_to_async(api_key_mint)(bob)
    for _ in range(3):
        assert (await v1_post(_body(), key=key)).status_code == 200
    assert upstream.requests == []
    assert len(second.requests) == 3
    first_breaker.succeeded()


def _upstreams(weights: list[int], seed: int) -> RemoteDeployments:
    return RemoteDeployments(
        [
            Upstream(
                engine=OpenAICompatibleEngine(
                    base_url=f"http://127.0.0.1:{9 + index}/v1", model="m", breaker=CircuitBreaker()
                ),
                weight=weight,
            )
            for index, weight in enumerate(weights)
        ],
        rng=random.Random(seed),  # noqa: S311 - a drawn order, repeatable
    )


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_weights_split_the_traffic_within_five_percent(seed: int) -> None:
    upstreams = _upstreams([3, 1, 6], seed)
    firsts = Counter(upstreams.order()[0].name for _ in range(1000))
    shares = [firsts[upstream.name] / 1000 for upstream in upstreams.upstreams]
    for share, expected in zip(shares, [0.3, 0.1, 0.6], strict=True):
        assert abs(share - expected) <= 0.05, shares
    # Every order holds every upstream once.
    assert sorted(u.name for u in upstreams.order()) == sorted(u.name for u in upstreams.upstreams)


def test_a_worker_moves_on_while_nothing_was_sent(upstream: FakeUpstream, second: FakeUpstream) -> None:
    upstream.mode = "always_503"
    deployments = RemoteDeployments(
        [
            Upstream(
                engine=OpenAICompatibleEngine(
                    base_url=server.base_url, model="m", max_retries=0, breaker=CircuitBreaker()
                ),
                weight=weight,
            )
            for server, weight in ((upstream, 1000), (second, 1))
        ],
        rng=random.Random(0),  # noqa: S311 - a drawn order, repeatable
    )
    texts: list[str] = []
    deployments.generate_stream(
        messages=[ChatMessage(role="user", content="hi")],
        params=GenerationParams(max_tokens=16),
        on_token=texts.extend,
        should_stop=lambda: False,
    )
    assert "".join(texts) == "from the second"


def test_deployments_join_only_a_draft_or_staging_version_through_the_guard(
    alice: User, upstream: FakeUpstream
) -> None:
    version = remote_model_register(alice, upstream)  # in production
    with pytest.raises(Exception, match="deployments join a draft or staging version"):
        model_deployment_add(version=version, base_url=upstream.base_url, remote_model="other", actor=alice)
    version.status = ModelVersion.Status.DRAFT
    version.save(update_fields=["status"])
    model_version_stage(version=version, actor=alice)
    with pytest.raises(Exception, match="cloud metadata"):
        model_deployment_add(
            version=version, base_url="http://169.254.169.254/v1", remote_model="m", actor=alice
        )
    with pytest.raises(Exception, match="GATEHOUSE_UPSTREAM_"):
        model_deployment_add(
            version=version, base_url=upstream.base_url, remote_model="m2", credential_ref="PATH", actor=alice
        )
    model_deployment_add(
        version=version, base_url=upstream.base_url, remote_model="m3", weight=5, actor=alice
    )
    assert list(version.deployments.values_list("remote_model", "weight")) == [
        ("upstream-model", 1),
        ("m3", 5),
    ]
    assert AuditEvent.objects.filter(action="model.deployment.added").count() == 1

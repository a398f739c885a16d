"""The response cache (opt-in per model): a deterministic request asked again is answered from
the first answer without calling the model, marked in a header and the record, charged by the
model's policy, and never given to another team unless the model shares it."""

from collections.abc import Iterator
from typing import Any

import pytest
from channels.db import database_sync_to_async

from accounts.models import QuotaPolicy, Team, User
from accounts.roles import Role
from accounts.services import team_create, team_member_add, user_create
from audit.models import AuditEvent
from inference.chat.response_cache import response_cache_clear_local
from inference.engines.loader import engines_clear
from inference.models import Model
from inference.services import model_serving_update
from tests.accounts.helpers import quota_counter_used
from tests.conftest import PASSWORD
from tests.fake_openai import FakeUpstream
from tests.inference.fast_path import api_key_mint, remote_model_register, sse_events, v1_post

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("inference_backend")]


@pytest.fixture(autouse=True)
def _cache_empty() -> Iterator[None]:
    response_cache_clear_local()
    yield
    response_cache_clear_local()


def _member(username: str, team: str) -> User:
    """A member on `team` (made if it is new)."""
    user = user_create(username=username, password=PASSWORD, roles=[Role.MEMBER])
    existing = Team.objects.filter(name=team).first()
    team_member_add(team=existing or team_create(name=team, actor=None), user=user, actor=None)
    return user


def _cached_model(alice: User, upstream: FakeUpstream, **changes: Any) -> None:
    version = remote_model_register(alice, upstream)
    model_serving_update(model=version.model, changes={"response_cache": True, **changes}, actor=alice)
    engines_clear()


def _body(**overrides: Any) -> dict[str, Any]:
    return {
        "model": "remote-model",
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": 0,
        **overrides,
    }


def _text(answer: Any, *, stream: bool) -> str:
    if not stream:
        return str(answer.json()["choices"][0]["message"]["content"])
    chunks = [event for event in sse_events(answer) if event != "[DONE]" and event["choices"]]
    return "".join(chunk["choices"][0]["delta"].get("content") or "" for chunk in chunks)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_a_repeated_deterministic_request_is_answered_without_the_model(
    alice: User, bob: User, upstream: FakeUpstream, stream: bool
) -> None:
    await database_sync_to_async(_cached_model)(alice, upstream)
    key = await database_sync_to_async(api_key_mint)(bob)
    first = await v1_post(_body(stream=stream), key=key)
    again = await v1_post(_body(stream=stream), key=key, **{"X-Request-ID": f"hit-{stream}"})
    assert (first.headers["X-Gatehouse-Cache"], again.headers["X-Gatehouse-Cache"]) == ("miss", "hit")
    assert _text(again, stream=stream) == _text(first, stream=stream) == "".join(upstream.words)
    assert len(upstream.requests) == 1
    record = await database_sync_to_async(AuditEvent.objects.get)(
        action="inference.completed", request_id=f"hit-{stream}"
    )
    assert record.metadata["cache"] == "hit"
    assert "upstream" not in record.metadata  # nothing was called


async def test_only_deterministic_requests_with_the_same_settings_are_cached(
    alice: User, bob: User, upstream: FakeUpstream
) -> None:
    await database_sync_to_async(_cached_model)(alice, upstream)
    key = await database_sync_to_async(api_key_mint)(bob)
    sampled = [await v1_post(_body(temperature=0.7), key=key) for _ in range(2)]
    assert all("X-Gatehouse-Cache" not in answer.headers for answer in sampled)
    assert len(upstream.requests) == 2
    seeded = [await v1_post(_body(temperature=0.7, seed=7), key=key) for _ in range(2)]
    assert [answer.headers["X-Gatehouse-Cache"] for answer in seeded] == ["miss", "hit"]
    assert len(upstream.requests) == 3
    other = await v1_post(_body(temperature=0.7, seed=7, max_tokens=5), key=key)  # another request
    assert other.headers["X-Gatehouse-Cache"] == "miss"
    assert len(upstream.requests) == 4


async def test_a_cached_answer_is_never_given_to_another_team_unless_shared(
    alice: User, upstream: FakeUpstream
) -> None:
    await database_sync_to_async(_cached_model)(alice, upstream)
    bob, bert, dave = [
        await database_sync_to_async(_member)(name, team)
        for name, team in (("bob", "ml"), ("bert", "ml"), ("dave", "ops"))
    ]
    keys = {user.username: await database_sync_to_async(api_key_mint)(user) for user in (bob, bert, dave)}
    assert (await v1_post(_body(), key=keys["bob"])).headers["X-Gatehouse-Cache"] == "miss"
    assert (await v1_post(_body(), key=keys["bert"])).headers["X-Gatehouse-Cache"] == "hit"  # same team
    assert (await v1_post(_body(), key=keys["dave"])).headers["X-Gatehouse-Cache"] == "miss"
    assert len(upstream.requests) == 2

    await database_sync_to_async(
        lambda: model_serving_update(
            model=Model.objects.get(name="remote-model"), changes={"response_cache_shared": True}, actor=alice
        )
    )()
    assert (await v1_post(_body(), key=keys["dave"])).headers["X-Gatehouse-Cache"] == "miss"
    assert (await v1_post(_body(), key=keys["bob"])).headers["X-Gatehouse-Cache"] == "hit"  # dave's
    assert len(upstream.requests) == 3


@pytest.mark.parametrize(("charge", "charged"), [("full", True), ("none", False)])
async def test_a_hit_is_charged_by_the_models_policy(
    alice: User, bob: User, upstream: FakeUpstream, charge: str, charged: bool
) -> None:
    await database_sync_to_async(_cached_model)(alice, upstream, response_cache_charge=charge)
    await database_sync_to_async(QuotaPolicy.objects.create)(name="day", user=bob, tokens_per_day=100_000)
    key = await database_sync_to_async(api_key_mint)(bob)
    await v1_post(_body(), key=key)
    after_miss = await database_sync_to_async(quota_counter_used)(bob, "tokens")
    hit = await v1_post(_body(), key=key)
    assert hit.headers["X-Gatehouse-Cache"] == "hit"
    assert hit.json()["usage"]["completion_tokens"] == len(upstream.words)  # what the answer cost
    after_hit = await database_sync_to_async(quota_counter_used)(bob, "tokens")
    assert after_hit - after_miss == (after_miss if charged else 0)

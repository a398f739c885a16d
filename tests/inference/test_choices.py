"""`n`: several choices per request, each a generation of its own (admitted, charged and
recorded), up to the model's `max_choices`; a refusal of any leaves nothing held."""

from typing import Any

import pytest
from channels.db import database_sync_to_async

from accounts.models import QuotaPolicy, User
from audit.models import AuditEvent
from inference.models import Model, ModelVersion
from tests.accounts.helpers import quota_counter_used
from tests.fake_openai import FakeUpstream
from tests.inference.fast_path import api_key_mint, remote_model_register, sse_events, v1_post
from tests.waiting import eventually

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("inference_backend")]


def _body(**overrides: Any) -> dict[str, Any]:
    return {
        "model": "demo-tiny",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 6,
        "temperature": 1.5,
        **overrides,
    }


def _records(request_id: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action="inference.completed", request_id=request_id))


async def test_each_choice_is_a_generation_charged_and_recorded(
    bob: User, demo_version: ModelVersion
) -> None:
    await database_sync_to_async(QuotaPolicy.objects.create)(
        name="bob-tokens", user=bob, tokens_per_day=100_000
    )
    key = await database_sync_to_async(api_key_mint)(bob)
    answer = await v1_post(_body(n=3), key=key, **{"X-Request-ID": "three-choices"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [choice["index"] for choice in body["choices"]] == [0, 1, 2]
    assert all(choice["message"]["content"] is not None for choice in body["choices"])
    records = await database_sync_to_async(_records)("three-choices")
    assert len(records) == 3
    assert len({record.metadata["generation_id"] for record in records}) == 3
    # The usage is every choice's, and that is what was charged.
    usage = body["usage"]
    assert usage["completion_tokens"] == sum(record.metadata["completion_tokens"] for record in records)
    assert usage["prompt_tokens"] == sum(record.metadata["prompt_tokens"] for record in records)
    assert await database_sync_to_async(quota_counter_used)(bob, "tokens") == usage["total_tokens"]


async def test_a_stream_of_choices_sends_each_under_its_index(bob: User, demo_version: ModelVersion) -> None:
    key = await database_sync_to_async(api_key_mint)(bob)
    answer = await v1_post(
        _body(n=2, stream=True, stream_options={"include_usage": True}, temperature=0), key=key
    )
    assert answer.status_code == 200, answer.text
    events = sse_events(answer)
    assert events[-1] == "[DONE]"
    usage_chunk = events[-2]
    assert usage_chunk["choices"] == []
    chunks = events[:-2]
    texts: dict[int, str] = {0: "", 1: ""}
    finishes: dict[int, str] = {}
    for chunk in chunks:
        (choice,) = chunk["choices"]
        texts[choice["index"]] += choice["delta"].get("content") or ""
        if choice["finish_reason"]:
            finishes[choice["index"]] = choice["finish_reason"]
    assert set(finishes) == {0, 1}
    # Greedy: both choices write the same answer, which one choice alone writes too.
    alone = (await v1_post(_body(temperature=0), key=key)).json()
    assert texts[0] == texts[1] == alone["choices"][0]["message"]["content"]
    assert usage_chunk["usage"]["completion_tokens"] == 2 * alone["usage"]["completion_tokens"]
    roles = [chunk["choices"][0]["index"] for chunk in chunks if chunk["choices"][0]["delta"].get("role")]
    assert roles == [0, 1]


async def test_text_completions_take_n_too(bob: User, demo_version: ModelVersion) -> None:
    key = await database_sync_to_async(api_key_mint)(bob)
    answer = await v1_post(
        {"model": "demo-tiny", "prompt": "Once", "max_tokens": 4, "n": 2}, key=key, url="/v1/completions"
    )
    assert answer.status_code == 200, answer.text
    assert [choice["index"] for choice in answer.json()["choices"]] == [0, 1]


async def test_more_choices_than_the_model_allows_is_a_400_that_holds_nothing(
    bob: User, demo_version: ModelVersion
) -> None:
    await database_sync_to_async(Model.objects.filter(name="demo-tiny").update)(max_choices=2)
    await database_sync_to_async(QuotaPolicy.objects.create)(
        name="bob-tokens", user=bob, tokens_per_day=100_000
    )
    key = await database_sync_to_async(api_key_mint)(bob)
    refused = await v1_post(_body(n=3), key=key)
    assert refused.status_code == 400
    assert refused.json()["error"]["message"] == "n is 3, above this model's limit of 2 choices per request."
    assert await database_sync_to_async(quota_counter_used)(bob, "tokens") == 0
    assert (await v1_post(_body(n=2), key=key)).status_code == 200


async def test_a_choice_refused_at_admission_gives_back_what_the_others_took(
    bob: User, demo_version: ModelVersion
) -> None:
    await database_sync_to_async(QuotaPolicy.objects.create)(
        name="bob-limits", user=bob, tokens_per_day=100_000, concurrent_streams=2
    )
    key = await database_sync_to_async(api_key_mint)(bob)
    refused = await v1_post(_body(n=3), key=key)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    # The two admitted choices gave their streams and tokens back.
    assert await database_sync_to_async(quota_counter_used)(bob, "streams") == 0
    assert await database_sync_to_async(quota_counter_used)(bob, "tokens") == 0
    assert (await v1_post(_body(n=2), key=key)).status_code == 200


async def test_a_remote_version_is_asked_once_per_choice(
    alice: User, bob: User, upstream: FakeUpstream
) -> None:
    await database_sync_to_async(remote_model_register)(alice, upstream)
    key = await database_sync_to_async(api_key_mint)(bob)
    answer = await v1_post(_body(model="remote-model", n=2), key=key)
    assert answer.status_code == 200, answer.text
    assert [choice["message"]["content"] for choice in answer.json()["choices"]] == [
        "".join(upstream.words)
    ] * 2
    assert len(upstream.requests) == 2
    assert all("n" not in request["body"] for request in upstream.requests)


async def test_a_failing_choice_fails_the_request_and_leaves_nothing_held(
    alice: User, bob: User, upstream: FakeUpstream
) -> None:
    await database_sync_to_async(remote_model_register)(alice, upstream)
    await database_sync_to_async(QuotaPolicy.objects.create)(
        name="bob-limits", user=bob, tokens_per_day=100_000, concurrent_streams=4
    )
    upstream.mode = "bad_request"
    key = await database_sync_to_async(api_key_mint)(bob)
    for _ in range(3):
        answer = await v1_post(_body(model="remote-model", n=3), key=key, **{"X-Request-ID": "three-failing"})
        assert answer.status_code == 503
        # A choice cancelled while it recorded its end finishes recording behind the answer.
        await eventually(lambda: True if quota_counter_used(bob, "streams") == 0 else None)
    # Each choice that ran is recorded (failed, or cancelled by the first failure); one cancelled
    # before it began is not, and whatever every choice held went back.
    records = await database_sync_to_async(
        lambda: list(AuditEvent.objects.filter(request_id="three-failing").values_list("action", flat=True))
    )()
    assert "inference.failed" in records
    assert set(records) <= {"inference.failed", "inference.completed"}
    assert await database_sync_to_async(quota_counter_used)(bob, "streams") == 0
    assert await database_sync_to_async(quota_counter_used)(bob, "tokens") == 0

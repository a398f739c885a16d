"""A chat is charged what its tokens cost at the prices it was admitted at, exactly; budgets
refuse what would pass them, saying which and when they reset."""

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from channels.db import database_sync_to_async

from accounts.models import UsageRecord, UsageRollup, User
from accounts.services.usage import usage_records_flush, usage_rollup
from audit.models import AuditEvent
from inference.engines.loader import engines_clear
from inference.models import ModelVersion
from inference.services import model_version_prices_update
from spend.models import Budget
from spend.services import budget_save
from tests.fake_openai import FakeUpstream
from tests.inference.fast_path import api_key_mint, remote_model_register, v1_post
from tests.inference.websocket import access_token, chat_frame, communicator_for, frames_until_end
from tests.waiting import eventually

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("inference_backend")]

# The fake upstream's usage: 11 prompt tokens, 8 answer tokens.
BODY = {"model": "remote-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}


def _priced(version: ModelVersion, alice: User, input_price: str, output_price: str) -> None:
    model_version_prices_update(
        version=version,
        input_per_million=Decimal(input_price),
        output_per_million=Decimal(output_price),
        actor=alice,
    )


async def _records(count: int) -> list[UsageRecord]:
    def flushed() -> list[UsageRecord] | None:
        usage_records_flush()
        records = list(UsageRecord.objects.order_by("id"))
        return records if len(records) >= count else None

    return list(await eventually(flushed))


async def test_each_chat_costs_its_tokens_at_the_prices_it_was_admitted_at(
    alice: User, bob: User, upstream: FakeUpstream
) -> None:
    version = await database_sync_to_async(remote_model_register)(alice, upstream)
    await database_sync_to_async(_priced)(version, alice, "2.5", "10")
    key = await database_sync_to_async(api_key_mint)(bob)
    assert (await v1_post(BODY, key=key)).status_code == 200
    await database_sync_to_async(_priced)(version, alice, "3", "15")  # from the next request on
    assert (await v1_post({**BODY, "stream": True}, key=key)).status_code == 200

    first, second = await _records(2)
    assert (first.prompt_tokens, first.completion_tokens, first.cost) == (11, 8, Decimal("0.0001075"))
    assert second.cost == Decimal("0.000153")  # 11 x 3 + 8 x 15, per million
    await database_sync_to_async(usage_rollup)(period=UsageRollup.Period.DAY, now=datetime.now(tz=UTC))
    rollup = await UsageRollup.objects.aget(period=UsageRollup.Period.DAY)
    assert rollup.cost == Decimal("0.0002605")


async def test_a_free_version_costs_nothing(alice: User, bob: User, upstream: FakeUpstream) -> None:
    await database_sync_to_async(remote_model_register)(alice, upstream)
    key = await database_sync_to_async(api_key_mint)(bob)
    assert (await v1_post(BODY, key=key)).status_code == 200
    (record,) = await _records(1)
    assert (record.completion_tokens, record.cost) == (8, Decimal(0))


def _budget(**fields: Any) -> Budget:
    alice = User.objects.get(username="alice")
    return budget_save(budget=Budget(**fields), actor=alice)


async def test_a_budget_admits_while_the_most_a_chat_can_cost_fits_then_refuses(
    alice: User, bob: User, upstream: FakeUpstream
) -> None:
    version = await database_sync_to_async(remote_model_register)(alice, upstream)
    await database_sync_to_async(_priced)(version, alice, "2.5", "10")
    await database_sync_to_async(_budget)(
        name="bob daily", user=bob, period=Budget.Period.DAY, amount=Decimal("0.0003")
    )
    key = await database_sync_to_async(api_key_mint)(bob)
    # Each reserves at most 0.000165 (its prompt's bound and 8 answer tokens) and costs 0.0001075.
    assert (await v1_post(BODY, key=key)).status_code == 200
    assert (await v1_post(BODY, key=key)).status_code == 200
    refused = await v1_post(BODY, key=key)

    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "quota_exceeded"
    assert error["message"].startswith(
        "Budget reached: budget 'bob daily' (your spend per day, USD 0.0003). Try again in "
    )
    assert 0 < int(refused.headers["Retry-After"]) <= 86_400
    assert len(upstream.requests) == 2  # the refused chat never reached the model
    denied = await AuditEvent.objects.filter(action="inference.refused").alast()
    assert denied is not None
    assert denied.metadata["code"] == "quota_exceeded"
    spent = sum(record.cost for record in await _records(2))
    assert spent == Decimal("0.000215")


async def test_a_budget_on_another_model_or_person_does_not_hold_this_chat(
    alice: User, bob: User, upstream: FakeUpstream
) -> None:
    version = await database_sync_to_async(remote_model_register)(alice, upstream)
    await database_sync_to_async(_priced)(version, alice, "2.5", "10")
    other = await database_sync_to_async(remote_model_register_named)(alice, upstream, "other-model")
    await database_sync_to_async(_budget)(
        name="other", model=other.model, period="month", amount=Decimal("0.0001")
    )
    await database_sync_to_async(_budget)(name="alice", user=alice, period="total", amount=Decimal("0.0001"))
    key = await database_sync_to_async(api_key_mint)(bob)
    assert (await v1_post(BODY, key=key)).status_code == 200
    assert (await v1_post({**BODY, "model": "other-model"}, key=key)).status_code == 429


def remote_model_register_named(alice: User, upstream: FakeUpstream, name: str) -> ModelVersion:
    from inference.services import model_register, model_version_promote, model_version_register_remote

    model = model_register(name=name, open_to_all=True, actor=alice)
    version = model_version_register_remote(
        model=model, label="r1", base_url=upstream.base_url, remote_model="upstream-model", actor=alice
    )
    version = model_version_promote(version=version, actor=alice)
    _priced(version, alice, "2.5", "10")
    engines_clear()
    return version


async def test_a_local_model_run_by_a_worker_is_charged_at_its_prices_too(
    alice: User, bob: User, demo_version: ModelVersion
) -> None:
    await database_sync_to_async(_priced)(demo_version, alice, "1", "2")
    communicator = communicator_for(token=await access_token(bob))
    await communicator.connect()
    await communicator.send_json_to(chat_frame("c1", max_tokens=5, temperature=0.0))
    done = (await frames_until_end(communicator, "c1"))[-1]
    await communicator.disconnect()
    (record,) = await _records(1)
    usage = done["usage"]
    expected = (usage["prompt_tokens"] * 1 + usage["completion_tokens"] * 2) / Decimal(1_000_000)
    assert record.cost == expected > 0

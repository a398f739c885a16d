"""Usage records: one per request that ran, written in bulk after it, exact under a quota."""

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.test import AsyncClient, override_settings

from accounts.models import QuotaPolicy, UsageRecord, User
from accounts.services import team_create, team_member_add
from accounts.services.usage import usage_records_flush
from audit.models import AuditEvent
from inference.models import ModelVersion
from tests.accounts.helpers import quota_counter_used
from tests.inference.websocket import access_token, chat_frame, communicator_for, frames_until_end
from tests.waiting import eventually

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("inference_backend")]


async def _flushed_records() -> list[UsageRecord]:
    """Records are written where the generation ran, just before `done`: give a worker a moment."""

    def flushed() -> list[UsageRecord] | None:
        usage_records_flush()
        return list(UsageRecord.objects.order_by("id")) or None

    return list(await eventually(flushed))


async def test_a_chat_leaves_one_record_matching_its_audit(
    alice: User, bob: User, demo_version: ModelVersion
) -> None:
    team = await database_sync_to_async(team_create)(name="ml", actor=alice)
    await database_sync_to_async(team_member_add)(team=team, user=bob, actor=alice)
    communicator = communicator_for(token=await access_token(bob), headers=[(b"x-request-id", b"usage-1")])
    await communicator.connect()
    await communicator.send_json_to(chat_frame("c1", max_tokens=5, temperature=0.0))
    done = (await frames_until_end(communicator, "c1"))[-1]
    await communicator.disconnect()
    (record,) = await _flushed_records()
    assert (record.user_id, record.model_version_id, record.channel) == (bob.pk, demo_version.pk, "websocket")
    assert (record.prompt_tokens, record.completion_tokens) == (
        done["usage"]["prompt_tokens"],
        done["usage"]["completion_tokens"],
    )
    assert (record.outcome, record.request_id, record.team_ids) == ("completed", "usage-1", [team.pk])
    assert record.latency_ms is not None
    assert record.time_to_first_token_ms is not None
    assert record.latency_ms >= record.time_to_first_token_ms


@override_settings(GATEHOUSE_INFERENCE_MAX_QUEUE=0)
async def test_a_request_refused_for_a_full_queue_is_recorded_as_failed(
    bob: User, demo_version: ModelVersion
) -> None:
    headers = {"Authorization": f"Bearer {await access_token(bob)}"}
    body = {"model": "demo-tiny", "messages": [{"role": "user", "content": "hi"}]}
    response = await AsyncClient().post(
        "/v1/chat/completions", body, content_type="application/json", headers=headers
    )
    assert response.status_code == 503
    (record,) = await _flushed_records()
    assert (record.outcome, record.channel, record.completion_tokens) == ("failed", "api", 0)


@override_settings(GATEHOUSE_MAX_CONCURRENT_CHATS_PER_USER=500, GATEHOUSE_INFERENCE_MAX_QUEUE=500)
async def test_two_hundred_concurrent_requests_on_a_quota_of_one_hundred(
    bob: User, demo_version: ModelVersion, monkeypatch: pytest.MonkeyPatch
) -> None:
    fixed = datetime.now(tz=UTC).replace(second=30)  # one rate window, whatever the clock does
    monkeypatch.setattr("accounts.quotas.plan._now", lambda: fixed)
    await database_sync_to_async(QuotaPolicy.objects.create)(
        name="hundred", user=bob, requests_per_minute=100
    )
    headers = {"Authorization": f"Bearer {await access_token(bob)}"}
    body = {"model": "demo-tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}

    async def one() -> Any:
        return await AsyncClient().post(
            "/v1/chat/completions", body, content_type="application/json", headers=headers
        )

    statuses = [response.status_code for response in await asyncio.gather(*(one() for _ in range(200)))]
    assert (statuses.count(200), statuses.count(429)) == (100, 100)
    assert (
        await database_sync_to_async(quota_counter_used)(bob, "requests") == 100
    )  # the counter ends at the limit

    def all_flushed() -> bool | None:  # the last generations' records may still be on their way
        usage_records_flush()
        return UsageRecord.objects.count() >= 100 or None

    await eventually(all_flushed)
    assert await database_sync_to_async(UsageRecord.objects.count)() == 100
    assert (
        await database_sync_to_async(AuditEvent.objects.filter(action="inference.completed").count)() == 100
    )

"""Quotas on the chat doors: refused with the protocol's codes, charged exactly, never leaked.

Runs in both profiles: the SQL ledger on the embedded default, Redis in production.
"""

import asyncio
import subprocess
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.core.cache import cache
from django.test import AsyncClient, override_settings

from accounts.models import QuotaPolicy, User
from accounts.principal import Principal
from accounts.quotas.charge import Charge
from accounts.services.quotas import QuotaRefused, quota_admit, quota_settle
from inference import chat_slots
from inference.chat import admission
from inference.engines.base import ChatMessage
from inference.models import ModelVersion
from inference.protocol import ChatFrame
from tests.accounts.helpers import quota_counter_used
from tests.e2e.server import free_port
from tests.inference.websocket import access_token, chat_frame, chat_once, communicator_for
from tests.waiting import completed_audit_event, eventually

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("inference_backend")]


async def _policy(user: User, **limits: int) -> QuotaPolicy:
    return await database_sync_to_async(QuotaPolicy.objects.create)(
        name=f"{user}-limits", user=user, **limits
    )


def _tokens_used(user: User) -> int:
    return quota_counter_used(user, "tokens")


async def _ws_chat(user: User, client_id: str, **overrides: Any) -> list[dict[str, Any]]:
    return await chat_once(user, client_id, temperature=0.0, **overrides)


async def _api_chat(user: User, **overrides: Any) -> Any:
    body = {"model": "demo-tiny", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8}
    body.update(overrides)
    headers = {"Authorization": f"Bearer {await access_token(user)}"}
    return await AsyncClient().post(
        "/v1/chat/completions", body, content_type="application/json", headers=headers
    )


@pytest.fixture
def one_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every request of the test falls in one window, whenever the clock crosses a minute."""
    fixed = datetime.now(tz=UTC).replace(second=30)
    monkeypatch.setattr("accounts.quotas.plan._now", lambda: fixed)


@pytest.mark.usefixtures("one_minute")
async def test_requests_per_minute_refuse_the_third_request_on_either_door(
    bob: User, demo_version: ModelVersion
) -> None:
    await _policy(bob, requests_per_minute=2)
    assert (await _ws_chat(bob, "one", max_tokens=2))[-1]["type"] == "done"
    ok = await _api_chat(bob, max_tokens=2)
    assert ok.status_code == 200
    assert ok["x-ratelimit-limit-requests"] == "2"
    assert ok["x-ratelimit-remaining-requests"] == "0"
    assert ok["x-ratelimit-reset-requests"].endswith("s")
    (refused,) = await _ws_chat(bob, "three")
    assert refused["code"] == "rate_limited"
    assert refused["message"].startswith("Limit reached: your requests per minute (2). Try again in ")
    over = await _api_chat(bob)
    assert over.status_code == 429
    assert 1 <= int(over["Retry-After"]) <= 61
    assert over.json()["error"]["code"] == "rate_limited"


async def test_daily_tokens_are_reserved_then_settled_at_the_real_count(
    bob: User, demo_version: ModelVersion
) -> None:
    # The estimate (prompt bytes + template margin + max_tokens) fits once; the real use is less.
    await _policy(bob, tokens_per_day=50)
    done = (await _ws_chat(bob, "first", max_tokens=8))[-1]
    assert done["type"] == "done"
    usage = done["usage"]
    assert await database_sync_to_async(_tokens_used)(bob) == usage["total_tokens"]
    (refused,) = await _ws_chat(bob, "second", max_tokens=8)
    assert refused["code"] == "quota_exceeded"
    assert "your tokens per day (50)" in refused["message"]
    over = await _api_chat(bob)
    assert over.status_code == 429
    assert over.json()["error"]["code"] == "quota_exceeded"
    # Refusals reserved nothing: the counter still holds only what the first chat used.
    assert await database_sync_to_async(_tokens_used)(bob) == usage["total_tokens"]


async def test_streamed_and_whole_answers_are_charged_the_same(bob: User, demo_version: ModelVersion) -> None:
    await _policy(bob, tokens_per_day=100_000)
    whole = await _api_chat(bob, temperature=0)
    after_whole = await database_sync_to_async(_tokens_used)(bob)
    assert after_whole == whole.json()["usage"]["total_tokens"]
    streamed = await _api_chat(bob, temperature=0, stream=True)
    _ = b"".join([chunk async for chunk in streamed.streaming_content])
    assert await database_sync_to_async(_tokens_used)(bob) == 2 * after_whole
    assert whole["x-ratelimit-limit-tokens"] == "100000"


def test_a_stream_slot_is_held_until_the_stream_ends(bob: User) -> None:
    QuotaPolicy.objects.create(name="one-stream", user=bob, concurrent_streams=1)
    first = quota_admit(user=bob, api_key=None, token_estimate=10, lease_seconds=60)
    with pytest.raises(QuotaRefused) as busy:
        quota_admit(user=bob, api_key=None, token_estimate=10, lease_seconds=60)
    assert (busy.value.code, busy.value.message) == (
        "rate_limited",
        "Limit reached: your concurrent streams (1).",
    )
    quota_settle(admission=first, charge=Charge(completion_tokens=10))
    quota_admit(user=bob, api_key=None, token_estimate=10, lease_seconds=60)


async def test_a_disconnect_mid_stream_charges_what_ran_and_leaks_nothing(
    bob: User, demo_version: ModelVersion
) -> None:
    await _policy(bob, tokens_per_day=100_000, concurrent_streams=1)
    communicator = communicator_for(token=await access_token(bob))
    await communicator.connect()
    # Held after its first tokens until cancelled, so the disconnect never races the answer's end.
    with override_settings(GATEHOUSE_TEST_HOLD_MODELS=("demo-tiny",)):
        await communicator.send_json_to(chat_frame("long", max_tokens=256, temperature=0.0))
        assert (await communicator.receive_json_from(timeout=30))["type"] == "start"
    assert (await communicator.receive_json_from(timeout=60))["type"] == "token"
    await communicator.disconnect()
    event = await eventually(completed_audit_event)
    metadata = event.metadata
    assert metadata["finish_reason"] == "cancelled"
    charged = metadata["prompt_tokens"] + metadata["completion_tokens"]
    # The settlement runs beside the record, so it may land a moment after it: wait for it (a
    # loaded machine showed the reservation still held when the record was already there).
    await eventually(lambda: _tokens_used(bob) == charged or None, seconds=10)
    # The stream slot came back: another stream may start.
    assert (await _ws_chat(bob, "after", max_tokens=2))[-1]["type"] == "done"


async def test_a_client_too_far_behind_its_tokens_is_stopped_told_charged_and_leaks_nothing(
    bob: User, demo_version: ModelVersion, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that stops reading: its inbox fills, the relay stops the generation (its cancel
    flag), the record says cancelled, the charge matches the counter and the slot comes back."""
    await _policy(bob, tokens_per_day=100_000, concurrent_streams=1)
    # No room at all: the first hop with tokens overflows, as one a whole backlog behind would.
    monkeypatch.setattr("inference.relay.inbox.INBOX_MAX_TOKENS", 0)
    frames = await _ws_chat(bob, "flood", max_tokens=256)
    assert frames[0]["type"] == "start"
    assert frames[-1] == {
        "type": "error",
        "id": "flood",
        "code": "unavailable",
        "message": "The answer was stopped: its tokens were not being read.",
    }
    event = await eventually(completed_audit_event)
    assert event.metadata["finish_reason"] == "cancelled"
    assert event.metadata["completion_tokens"] < 256
    charged = event.metadata["prompt_tokens"] + event.metadata["completion_tokens"]
    assert await database_sync_to_async(_tokens_used)(bob) == charged
    monkeypatch.undo()
    assert (await _ws_chat(bob, "after", max_tokens=2))[-1]["type"] == "done"


def test_token_quotas_fail_closed_and_rate_limits_fail_open_only_when_told_to(
    bob: User, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Redis of the test's own, stopped: the ledger cannot answer."""
    import redis

    from accounts.quotas.redis_ledger import RedisQuotaLedger

    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(port=port, socket_timeout=1, socket_connect_timeout=1)
        for _ in range(50):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.1)
        monkeypatch.setattr("accounts.services.quotas.quota_ledger", lambda: RedisQuotaLedger(client=client))
        QuotaPolicy.objects.create(name="rate", user=bob, requests_per_minute=100)
        assert quota_admit(user=bob, api_key=None, token_estimate=10, lease_seconds=60) is not None
    finally:
        server.terminate()
        server.wait(timeout=10)
    settings.GATEHOUSE_RATE_LIMIT_FAIL_OPEN = False
    with pytest.raises(QuotaRefused) as closed:
        quota_admit(user=bob, api_key=None, token_estimate=10, lease_seconds=60)
    assert (closed.value.status, closed.value.code) == (503, "unavailable")
    settings.GATEHOUSE_RATE_LIMIT_FAIL_OPEN = True
    assert quota_admit(user=bob, api_key=None, token_estimate=10, lease_seconds=60) is not None
    QuotaPolicy.objects.create(name="tokens", user=bob, tokens_per_day=1000)
    with pytest.raises(QuotaRefused) as tokens_closed:
        quota_admit(user=bob, api_key=None, token_estimate=10, lease_seconds=60)
    assert tokens_closed.value.status == 503


async def test_an_engine_failure_gives_the_whole_reservation_back(
    bob: User, demo_version: ModelVersion
) -> None:
    """The model refuses to load (its manifest no longer matches): nothing ran, nothing is charged."""
    await _policy(bob, tokens_per_day=100_000)
    version = await database_sync_to_async(ModelVersion.objects.get)(pk=demo_version.pk)
    version.manifest = {**version.manifest, "model.safetensors": "0" * 64}
    await database_sync_to_async(version.save)()
    (error,) = [frame for frame in await _ws_chat(bob, "broken") if frame["type"] == "error"]
    assert error["code"] == "unavailable"
    assert await database_sync_to_async(_tokens_used)(bob) == 0


async def test_a_caller_gone_mid_admission_gives_back_what_the_admission_took(
    bob: User, demo_version: ModelVersion, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The client hangs up while the admission script runs: the script still takes the slot and
    # the stream lease, and they must come back at once, not when the leases run out
    # (mutation: no give-back on cancel; the stream lease stays held).
    await _policy(bob, concurrent_streams=1)
    entered, answer = asyncio.Event(), asyncio.Event()
    real = admission.quota_chat_admit_async

    async def held_admission(**kwargs: Any) -> Any:
        entered.set()
        await answer.wait()
        return await real(**kwargs)

    monkeypatch.setattr(admission, "quota_chat_admit_async", held_admission)
    frame = ChatFrame(
        id="gone",
        model=demo_version.model.name,
        messages=[ChatMessage(role="user", content="hello")],
        max_tokens=8,
        temperature=0.0,
        top_p=None,
        conversation=None,
    )
    admitting = asyncio.ensure_future(
        admission.chat_admit(
            principal=Principal(user=bob, method="jwt"),
            frame=frame,
            request_id="gone-1",
            client_ip=None,
            channel="api",
        )
    )
    await entered.wait()
    admitting.cancel()
    answer.set()
    with pytest.raises(asyncio.CancelledError):
        await admitting

    def given_back() -> bool | None:
        streams = quota_counter_used(bob, "streams")
        slots = cache.get(chat_slots._key(bob.pk)) or 0
        return True if (streams, slots) == (0, 0) else None

    assert await eventually(given_back)

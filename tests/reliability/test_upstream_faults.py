"""A remote OpenAI-compatible upstream that hangs, resets or keeps failing.

Promised: a hanging upstream costs the client one read timeout, not a hang (the client hears
`unavailable` while the upstream still holds its answer); a reset after
the first token ends the chat with an error and is not retried (a retry would send a
second, different answer); a failing upstream opens the circuit, so later chats fail fast
without touching it, and one trial goes through once the pause is over. Every chat is
audited and the quota counter holds exactly what the records charged.
"""

from collections.abc import Iterator
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.test import override_settings

from accounts.models import QuotaPolicy, User
from audit.models import AuditEvent
from inference.models import ModelVersion
from inference.services import model_register, model_version_promote, model_version_register_remote
from tests.accounts.helpers import quota_counter_used
from tests.fake_openai import FakeUpstream, clock_advance, fake_upstream
from tests.inference.websocket import access_token, chat_frame, communicator_for, frames_until_end

pytestmark = [
    pytest.mark.reliability,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("inference_backend"),
]

READ_TIMEOUT = 0.5
BREAKER_THRESHOLD = 3
BREAKER_PAUSE = 1.0


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with fake_upstream() as server:
        yield server


def _remote_model(alice: User, bob: User, upstream: FakeUpstream) -> ModelVersion:
    QuotaPolicy.objects.create(name="bob", user=bob, tokens_per_day=100_000)
    model = model_register(name="remote-model", open_to_all=True, actor=alice)
    version = model_version_register_remote(
        model=model, label="r1", base_url=upstream.base_url, remote_model="upstream-model", actor=alice
    )
    return model_version_promote(version=version, actor=alice)


async def _chat(token: str, client_id: str) -> list[dict[str, Any]]:
    communicator = communicator_for(token=token)
    await communicator.connect()
    await communicator.send_json_to(chat_frame(client_id, model="remote-model"))
    frames = await frames_until_end(communicator, client_id)
    await communicator.disconnect()
    return frames


def _charged_and_used(bob: User) -> tuple[int, int]:
    charged = sum(
        int(event.metadata.get("prompt_tokens") or 0) + int(event.metadata.get("completion_tokens") or 0)
        for event in AuditEvent.objects.filter(action__startswith="inference.")
    )
    return charged, quota_counter_used(bob, "tokens")


@override_settings(GATEHOUSE_REMOTE_READ_TIMEOUT=READ_TIMEOUT, GATEHOUSE_REMOTE_MAX_RETRIES=0)
async def test_a_hanging_upstream_costs_one_timeout_and_gives_the_quota_back(
    alice: User, bob: User, upstream: FakeUpstream
) -> None:
    upstream.mode = "hang"
    await database_sync_to_async(_remote_model)(alice, bob, upstream)
    frames = await _chat(await access_token(bob), "hung")
    assert frames[-1]["type"] == "error"
    assert frames[-1]["code"] == "unavailable"
    # The client was told while the upstream still held its answer: its read timeout spoke.
    assert (upstream.held, upstream.answered_after_hold) == (1, 0)
    upstream.release()
    event = await database_sync_to_async(AuditEvent.objects.get)(action="inference.failed")
    assert "did not answer" in event.metadata["reason"]
    assert await database_sync_to_async(quota_counter_used)(bob, "tokens") == 0


@override_settings(GATEHOUSE_REMOTE_MAX_RETRIES=2)
async def test_a_reset_mid_answer_ends_the_chat_charges_what_ran_and_is_not_retried(
    alice: User, bob: User, upstream: FakeUpstream
) -> None:
    upstream.mode = "reset_mid_stream"
    await database_sync_to_async(_remote_model)(alice, bob, upstream)
    frames = await _chat(await access_token(bob), "reset")
    tokens = [frame for frame in frames if frame["type"] == "token"]
    assert [token["text"] for token in tokens] == upstream.words[:2]
    assert frames[-1]["type"] == "error"
    assert frames[-1]["code"] == "unavailable"
    assert len(upstream.requests) == 1, "the upstream was asked again after it had answered"
    event = await database_sync_to_async(AuditEvent.objects.get)(action="inference.failed")
    assert event.metadata["completion_tokens"] == 2
    charged, used = await database_sync_to_async(_charged_and_used)(bob)
    assert used == charged > 0


@override_settings(
    GATEHOUSE_REMOTE_MAX_RETRIES=0,
    GATEHOUSE_REMOTE_BREAKER_THRESHOLD=BREAKER_THRESHOLD,
    GATEHOUSE_REMOTE_BREAKER_RESET_SECONDS=BREAKER_PAUSE,
    GATEHOUSE_REMOTE_GENERATION="web",
)
async def test_a_failing_upstream_opens_the_circuit_then_a_trial_closes_it(
    alice: User, bob: User, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream.mode = "always_503"
    await database_sync_to_async(_remote_model)(alice, bob, upstream)
    token = await access_token(bob)
    for attempt in range(BREAKER_THRESHOLD):
        frames = await _chat(token, f"failing-{attempt}")
        assert frames[-1]["code"] == "unavailable"
    asked = len(upstream.requests)
    assert asked == BREAKER_THRESHOLD

    frames = await _chat(token, "fast-fail")
    assert frames[-1]["code"] == "unavailable"
    assert len(upstream.requests) == asked, "an open circuit still called the upstream"

    upstream.mode = "ok"
    # The pause passes (remote generations run in this process: GATEHOUSE_REMOTE_GENERATION=web).
    clock_advance(monkeypatch, seconds=BREAKER_PAUSE)
    frames = await _chat(token, "trial")
    assert frames[-1]["type"] == "done", frames[-1]
    frames = await _chat(token, "closed-again")
    assert frames[-1]["type"] == "done", frames[-1]
    failed = await database_sync_to_async(AuditEvent.objects.filter(action="inference.failed").count)()
    assert failed == BREAKER_THRESHOLD + 1
    charged, used = await database_sync_to_async(_charged_and_used)(bob)
    assert used == charged

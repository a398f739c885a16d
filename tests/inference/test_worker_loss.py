"""A worker killed mid-stream: the client hears `unavailable` from the stall watchdog (not
from a lease running out), and it is audited.

Production profile only: it kills a real Celery worker process (one of its own, serving a
model of its own, so the suite's shared worker lives on).
"""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from channels.db import database_sync_to_async
from django.conf import settings
from django.test import override_settings

from accounts.models import QuotaPolicy, User
from audit.models import AuditEvent
from tests.accounts.helpers import quota_counter_used
from tests.celery_worker import CeleryWorker, database_url
from tests.inference.websocket import access_token, chat_frame, communicator_for
from tests.profile import PRODUCTION

pytestmark = [
    # Part of the reliability suite (`make test-reliability`): a worker SIGKILLed mid-generation.
    pytest.mark.reliability,
    pytest.mark.skipif(not PRODUCTION, reason="kills a Celery worker process (production profile)"),
    pytest.mark.django_db(transaction=True),
]

STALL_TIMEOUT = 3.0


@pytest.fixture
def mortal_worker(tmp_path: Path, model_root: Path) -> Iterator[CeleryWorker]:
    worker = CeleryWorker(
        env={
            **os.environ,
            "DATABASE_URL": database_url(settings.DATABASES["default"]),
            "REDIS_URL": settings.REDIS_URL,
            "GATEHOUSE_MODEL_ROOT": str(model_root),
        },
        log_path=tmp_path / "mortal-worker.log",
        queues="inference.mortal-model",
        name="mortal",
    )
    worker.start()
    yield worker
    worker.stop()


def _mortal_model(alice: User) -> None:
    from inference.services import model_register, model_version_promote
    from tests.inference.test_lifecycle import register_second_version

    model = model_register(name="mortal-model", open_to_all=True, actor=alice)
    model_version_promote(version=register_second_version(model, actor=alice, label="v1"), actor=alice)


@override_settings(GATEHOUSE_GENERATION_STALL_TIMEOUT=STALL_TIMEOUT)
async def test_a_worker_killed_mid_stream_ends_the_chat_unavailable_promptly(
    alice: User, bob: User, mortal_worker: CeleryWorker
) -> None:
    await database_sync_to_async(_mortal_model)(alice)
    await database_sync_to_async(QuotaPolicy.objects.create)(name="bob", user=bob, tokens_per_day=100_000)
    communicator = communicator_for(token=await access_token(bob))
    await communicator.connect()
    # Greedy: the demo model never ends early, so 480 tokens keep it busy past the kill.
    await communicator.send_json_to(
        chat_frame("doomed", model="mortal-model", max_tokens=480, temperature=0.0)
    )
    frames = [await communicator.receive_json_from(timeout=60)]
    while frames[-1]["type"] != "token":
        frames.append(await communicator.receive_json_from(timeout=60))
    assert mortal_worker.process is not None
    mortal_worker.process.kill()
    # Only the stall watchdog ends a chat whose worker is gone; its message says so.
    while frames[-1]["type"] not in ("done", "error"):
        frames.append(await communicator.receive_json_from(timeout=STALL_TIMEOUT + 10))
    await communicator.disconnect()
    assert frames[-1] == {
        "type": "error",
        "id": "doomed",
        "code": "unavailable",
        "message": "The model did not respond in time; try again.",
    }
    tokens = [frame for frame in frames if frame["type"] == "token"]
    assert [frame["index"] for frame in tokens] == list(range(len(tokens)))
    assert len(tokens) < 480
    event = await database_sync_to_async(AuditEvent.objects.get)(action="inference.failed")
    assert event.metadata["reason"] == "the model worker stopped responding"
    # The dead worker's token reservation went back when the chat was given up, not at lease end.
    assert await database_sync_to_async(quota_counter_used)(bob, "tokens") == 0


@override_settings(GATEHOUSE_GENERATION_STALL_TIMEOUT=STALL_TIMEOUT)
async def test_a_worker_killed_mid_batch_tells_every_stream_settles_and_records_each(
    alice: User, bob: User, mortal_worker: CeleryWorker
) -> None:
    """Three chats decoding in one batch when their worker dies: each hears `unavailable`,
    each is recorded, and no reservation outlives them."""
    await database_sync_to_async(_mortal_model)(alice)
    await database_sync_to_async(QuotaPolicy.objects.create)(name="bob", user=bob, tokens_per_day=100_000)
    communicator = communicator_for(token=await access_token(bob))
    await communicator.connect()
    ids = ["one", "two", "three"]
    for client_id in ids:
        await communicator.send_json_to(
            chat_frame(client_id, model="mortal-model", max_tokens=480, temperature=0.0)
        )
    frames: dict[str, list[dict[str, object]]] = {client_id: [] for client_id in ids}
    while not all(any(frame["type"] == "token" for frame in frames[client_id]) for client_id in ids):
        frame = await communicator.receive_json_from(timeout=60)
        frames[str(frame["id"])].append(frame)
    assert mortal_worker.process is not None
    mortal_worker.process.kill()
    ended: set[str] = set()
    while ended != set(ids):
        frame = await communicator.receive_json_from(timeout=STALL_TIMEOUT + 10)
        frames[str(frame["id"])].append(frame)
        if frame["type"] in ("done", "error"):
            ended.add(str(frame["id"]))
    await communicator.disconnect()
    for client_id in ids:
        tokens = [frame for frame in frames[client_id] if frame["type"] == "token"]
        assert [frame["index"] for frame in tokens] == list(range(len(tokens)))
        assert frames[client_id][-1]["type"] == "error", frames[client_id][-1]
        assert frames[client_id][-1]["code"] == "unavailable"
    events = await database_sync_to_async(list)(AuditEvent.objects.filter(action="inference.failed"))
    assert len(events) == 3
    assert {event.metadata["reason"] for event in events} == {"the model worker stopped responding"}
    assert await database_sync_to_async(quota_counter_used)(bob, "tokens") == 0

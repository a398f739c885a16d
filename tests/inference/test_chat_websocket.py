"""/ws/chat/ end to end through the ASGI stack (SPEC §6).

Runs in both profiles: on the embedded default generations run on the in-process pool;
in the production profile they run on a real Celery worker and stream back over Redis.
"""

import uuid
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.test import override_settings

from accounts.models import QuotaPolicy, User
from audit.models import AuditEvent
from gatehouse.local_cache import local_caches_clear
from inference.models import ModelVersion
from inference.services.chat import chat_prompt_digest
from tests.accounts.helpers import quota_counter_used
from tests.database_transactions import transactions_counted
from tests.inference.websocket import access_token, chat_frame, communicator_for, frames_until_end, token_pair
from tests.profile import PRODUCTION
from tests.waiting import eventually

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("inference_backend")]

# The tests that cancel hold the demo model after its first tokens until the cancel arrives
# (GATEHOUSE_TEST_HOLD_MODELS), so the cancel never races the end of the answer.
HELD = ("demo-tiny",)


def _assert_contiguous_stream(frames: list[dict[str, Any]], *, client_id: str) -> dict[str, Any]:
    start, *tokens, done = frames
    conversation = start.pop("conversation")
    assert start == {"type": "start", "id": client_id, "model": "demo-tiny", "version": "v1"}
    assert uuid.UUID(conversation)
    assert [token["type"] for token in tokens] == ["token"] * len(tokens)
    assert [token["index"] for token in tokens] == list(range(len(tokens)))
    assert done["type"] == "done"
    usage = done["usage"]
    assert usage["completion_tokens"] == len(tokens)
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["prompt_tokens"] > 0
    return done


async def test_a_jwt_client_gets_start_contiguous_tokens_and_done(
    bob: User, demo_version: ModelVersion
) -> None:
    communicator = communicator_for(token=await access_token(bob))
    connected, _ = await communicator.connect()
    assert connected
    # Greedy: the demo model never writes end-of-text for this prompt, so it runs to max_tokens.
    await communicator.send_json_to(chat_frame("c1", max_tokens=12, temperature=0.0))
    done = _assert_contiguous_stream(await frames_until_end(communicator, "c1"), client_id="c1")
    assert done["finish_reason"] == "length"
    assert done["usage"]["completion_tokens"] == 12
    await communicator.disconnect()


async def test_each_chat_is_audited_with_usage(bob: User, demo_version: ModelVersion) -> None:
    communicator = communicator_for(token=await access_token(bob), headers=[(b"x-request-id", b"ws-trace-1")])
    await communicator.connect()
    await communicator.send_json_to(chat_frame("c1", max_tokens=6))
    done = (await frames_until_end(communicator, "c1"))[-1]
    await communicator.disconnect()
    event = await database_sync_to_async(AuditEvent.objects.get)(action="inference.completed")
    assert event.actor_id == bob.pk
    assert event.actor_display == "bob"
    assert event.target_type == "inference.modelversion"
    assert event.target_id == str(demo_version.pk)
    assert event.request_id == "ws-trace-1"
    assert event.metadata["completion_tokens"] == done["usage"]["completion_tokens"]
    assert event.metadata["finish_reason"] == done["finish_reason"]
    assert event.metadata["channel"] == "websocket"
    # The prompt is on record as a hash only: matchable later, never readable from the trail.
    messages = chat_frame("c1")["messages"]
    assert event.metadata["prompt_sha256"] == chat_prompt_digest(messages=messages)
    assert messages[-1]["content"] not in event.metadata_json


async def test_no_token_is_rejected_at_the_handshake(db: None) -> None:
    connected, code = await communicator_for().connect()
    assert not connected
    assert code == 4401


@pytest.mark.parametrize("token", ["not-a-jwt", "", "eyJhbGciOiJub25lIn0.eyJ1c2VyX2lkIjoiMSJ9."])
async def test_an_invalid_token_is_rejected(bob: User, token: str) -> None:
    connected, _ = await communicator_for(token=token).connect()
    assert not connected


async def test_a_refresh_token_is_not_an_access_token(bob: User) -> None:
    pair = await database_sync_to_async(token_pair)(bob)
    connected, _ = await communicator_for(token=pair.refresh).connect()
    assert not connected


async def test_a_deactivated_users_token_is_rejected(bob: User) -> None:
    token = await access_token(bob)
    bob.is_active = False
    await database_sync_to_async(bob.save)()
    connected, _ = await communicator_for(token=token).connect()
    assert not connected


async def test_a_foreign_browser_origin_is_rejected(bob: User) -> None:
    connected, _ = await communicator_for(
        token=await access_token(bob), origin="https://evil.example"
    ).connect()
    assert not connected


async def test_an_allowed_browser_origin_is_accepted(bob: User) -> None:
    communicator = communicator_for(token=await access_token(bob), origin="http://localhost:8000")
    connected, _ = await communicator.connect()
    assert connected
    await communicator.disconnect()


async def test_a_malformed_frame_gets_an_error_and_the_connection_lives_on(
    bob: User, demo_version: ModelVersion
) -> None:
    communicator = communicator_for(token=await access_token(bob))
    await communicator.connect()
    await communicator.send_to(text_data="{this is not json")
    assert await communicator.receive_json_from() == {
        "type": "error",
        "id": None,
        "code": "invalid",
        "message": "The frame is not valid JSON.",
    }
    await communicator.send_to(bytes_data=b"\x00\x01")
    assert (await communicator.receive_json_from())["message"] == "Frames must be JSON text, not binary."
    await communicator.send_json_to({"type": "chat", "id": "c9", "model": "demo-tiny", "messages": []})
    error = await communicator.receive_json_from()
    assert (error["id"], error["code"]) == ("c9", "invalid")
    # Still open and working.
    await communicator.send_json_to(chat_frame("c2", max_tokens=3))
    _assert_contiguous_stream(await frames_until_end(communicator, "c2"), client_id="c2")
    await communicator.disconnect()


async def test_an_unknown_model_is_not_found(bob: User, demo_version: ModelVersion) -> None:
    communicator = communicator_for(token=await access_token(bob))
    await communicator.connect()
    await communicator.send_json_to(chat_frame("c1", model="gpt-17"))
    error = await communicator.receive_json_from()
    assert (error["type"], error["id"], error["code"]) == ("error", "c1", "not_found")
    assert "gpt-17" in error["message"]
    await communicator.disconnect()


async def test_a_closed_model_is_not_found_for_a_member(bob: User, demo_version: ModelVersion) -> None:
    model = demo_version.model
    model.open_to_all = False
    await database_sync_to_async(model.save)()
    communicator = communicator_for(token=await access_token(bob))
    await communicator.connect()
    await communicator.send_json_to(chat_frame("c1"))
    assert (await communicator.receive_json_from())["code"] == "not_found"
    await communicator.disconnect()


async def test_max_tokens_above_the_model_cap_is_invalid(bob: User, demo_version: ModelVersion) -> None:
    communicator = communicator_for(token=await access_token(bob))
    await communicator.connect()
    await communicator.send_json_to(chat_frame("c1", max_tokens=100_000))
    error = await communicator.receive_json_from()
    assert error["code"] == "invalid"
    assert "above this model's limit of 256" in error["message"]
    await communicator.disconnect()


async def test_a_prompt_longer_than_the_context_is_invalid_and_audited(
    bob: User, demo_version: ModelVersion
) -> None:
    communicator = communicator_for(token=await access_token(bob))
    await communicator.connect()
    await communicator.send_json_to(chat_frame("c1", messages=[{"role": "user", "content": "x" * 600}]))
    frames = await frames_until_end(communicator, "c1")
    assert frames[-1]["type"] == "error"
    assert frames[-1]["code"] == "invalid"
    assert "context of 512 tokens" in frames[-1]["message"]
    await communicator.disconnect()
    event = await database_sync_to_async(AuditEvent.objects.get)(action="inference.failed")
    assert event.outcome == AuditEvent.Outcome.FAILURE


@override_settings(GATEHOUSE_TEST_HOLD_MODELS=HELD)
async def test_cancel_ends_the_chat_with_finish_reason_cancelled(
    bob: User, demo_version: ModelVersion
) -> None:
    communicator = communicator_for(token=await access_token(bob))
    await communicator.connect()
    await communicator.send_json_to(chat_frame("long", max_tokens=256, temperature=0.0))
    assert (await communicator.receive_json_from(timeout=30))["type"] == "start"
    assert (await communicator.receive_json_from(timeout=60))["type"] == "token"
    await communicator.send_json_to({"type": "cancel", "id": "long"})
    frames = await frames_until_end(communicator, "long")
    done = frames[-1]
    assert done["type"] == "done"
    assert done["finish_reason"] == "cancelled"
    assert done["usage"]["completion_tokens"] < 256
    await communicator.disconnect()


async def test_cancelling_an_unknown_chat_is_not_found(bob: User) -> None:
    communicator = communicator_for(token=await access_token(bob))
    await communicator.connect()
    await communicator.send_json_to({"type": "cancel", "id": "nope"})
    assert await communicator.receive_json_from() == {
        "type": "error",
        "id": "nope",
        "code": "not_found",
        "message": "No chat with this id is running.",
    }
    await communicator.disconnect()


async def test_several_chats_run_at_once_on_one_connection(bob: User, demo_version: ModelVersion) -> None:
    communicator = communicator_for(token=await access_token(bob))
    await communicator.connect()
    ids = ["a", "b", "c"]
    for client_id in ids:
        await communicator.send_json_to(chat_frame(client_id, max_tokens=8))
    by_id: dict[str, list[dict[str, Any]]] = {client_id: [] for client_id in ids}
    finished: set[str] = set()
    while finished != set(ids):
        frame = await communicator.receive_json_from(timeout=60)
        by_id[frame["id"]].append(frame)
        if frame["type"] in ("done", "error"):
            finished.add(frame["id"])
    for client_id in ids:
        _assert_contiguous_stream(by_id[client_id], client_id=client_id)
    await communicator.disconnect()


async def test_chats_batched_together_arrive_whole_in_order_and_a_cancel_ends_only_its_own(
    bob: User, demo_version: ModelVersion
) -> None:
    """Four chats share the model's batch, their tokens leaving in gathered hops: each arrives
    complete and in order with its own text, and the one cancelled mid-batch ends alone,
    charged and recorded for what it was sent."""
    await database_sync_to_async(QuotaPolicy.objects.create)(name="bob", user=bob, tokens_per_day=100_000)
    communicator = communicator_for(token=await access_token(bob))
    await communicator.connect()
    ids = ["a", "b", "c"]
    for client_id in ids:
        await communicator.send_json_to(chat_frame(client_id, max_tokens=48, temperature=0.0))
    # Greedy, and long enough (the model's cap, 256 tokens) to be still decoding when its cancel lands.
    await communicator.send_json_to(chat_frame("doomed", max_tokens=256, temperature=0.0))
    by_id: dict[str, list[dict[str, Any]]] = {client_id: [] for client_id in [*ids, "doomed"]}
    finished: set[str] = set()
    while finished != set(by_id):
        frame = await communicator.receive_json_from(timeout=60)
        by_id[frame["id"]].append(frame)
        if frame["type"] == "token" and frame["id"] == "doomed" and frame["index"] == 0:
            await communicator.send_json_to({"type": "cancel", "id": "doomed"})
        if frame["type"] in ("done", "error"):
            finished.add(frame["id"])
    await communicator.disconnect()
    texts = []
    for client_id in ids:
        done = _assert_contiguous_stream(by_id[client_id], client_id=client_id)
        assert (done["finish_reason"], done["usage"]["completion_tokens"]) == ("length", 48)
        texts.append("".join(frame["text"] for frame in by_id[client_id] if frame["type"] == "token"))
    # The same prompt, greedy: identical answers, so no token crossed into another chat's stream.
    assert texts[0] == texts[1] == texts[2]
    cancelled = _assert_contiguous_stream(by_id["doomed"], client_id="doomed")
    assert cancelled["finish_reason"] == "cancelled"
    delivered = cancelled["usage"]["completion_tokens"]
    assert delivered < 256
    events = await database_sync_to_async(list)(AuditEvent.objects.filter(action="inference.completed"))
    assert sorted(event.metadata["completion_tokens"] for event in events) == sorted([48, 48, 48, delivered])
    # Every reservation settled for what was used, nothing held past the chats' end.
    usage = sum(frame["usage"]["total_tokens"] for frames in by_id.values() for frame in frames[-1:])
    assert await database_sync_to_async(quota_counter_used)(bob, "tokens") == usage


@override_settings(GATEHOUSE_WS_MAX_CONCURRENT_CHATS=1)
async def test_chats_beyond_the_per_connection_bound_are_refused(
    bob: User, demo_version: ModelVersion
) -> None:
    communicator = communicator_for(token=await access_token(bob))
    await communicator.connect()
    await communicator.send_json_to(chat_frame("a", max_tokens=64))
    await communicator.send_json_to(chat_frame("b", max_tokens=4))
    refused = None
    while refused is None:
        frame = await communicator.receive_json_from(timeout=60)
        if frame["id"] == "b":
            refused = frame
    assert (refused["type"], refused["code"]) == ("error", "rate_limited")
    await communicator.send_json_to({"type": "cancel", "id": "a"})
    await frames_until_end(communicator, "a")
    await communicator.disconnect()


async def test_a_duplicate_running_id_is_invalid(bob: User, demo_version: ModelVersion) -> None:
    communicator = communicator_for(token=await access_token(bob))
    await communicator.connect()
    await communicator.send_json_to(chat_frame("a", max_tokens=64))
    await communicator.send_json_to(chat_frame("a", max_tokens=4))
    duplicate = None
    while duplicate is None:
        frame = await communicator.receive_json_from(timeout=60)
        if frame["type"] == "error":
            duplicate = frame
    assert duplicate["message"] == "A chat with this id is already running."
    await communicator.disconnect()


@override_settings(GATEHOUSE_WS_MAX_FRAME_BYTES=1024)
async def test_an_oversized_frame_closes_with_1009(bob: User) -> None:
    communicator = communicator_for(token=await access_token(bob))
    await communicator.connect()
    await communicator.send_to(text_data="x" * 2048)
    closed = await communicator.receive_output(timeout=5)
    assert closed == {"type": "websocket.close", "code": 1009}
    # The client side of the close: lets the consumer finish instead of being cancelled.
    await communicator.disconnect()


@override_settings(GATEHOUSE_MAX_CONCURRENT_CHATS_PER_USER=1, GATEHOUSE_TEST_HOLD_MODELS=HELD)
async def test_the_per_user_bound_holds_across_connections_and_doors(
    bob: User, demo_version: ModelVersion
) -> None:
    from django.test import AsyncClient

    token = await access_token(bob)
    first, second = communicator_for(token=token), communicator_for(token=token)
    await first.connect()
    await second.connect()
    await first.send_json_to(chat_frame("long", max_tokens=256, temperature=0.0))
    assert (await first.receive_json_from(timeout=30))["type"] == "start"
    await second.send_json_to(chat_frame("more"))
    refused = await second.receive_json_from(timeout=10)
    assert (refused["code"], refused["message"]) == (
        "rate_limited",
        "You already have 1 chats running; wait for one to end.",
    )
    busy = await AsyncClient().post(
        "/v1/chat/completions",
        {"model": "demo-tiny", "messages": [{"role": "user", "content": "hi"}]},
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert busy.status_code == 429
    # The first chat ends: its slot comes back, and the second connection may chat.
    await first.send_json_to({"type": "cancel", "id": "long"})
    assert (await frames_until_end(first, "long"))[-1]["finish_reason"] == "cancelled"
    await second.send_json_to(chat_frame("now", max_tokens=3))
    assert (await second.receive_json_from(timeout=30))["type"] == "start"  # admitted
    await second.send_json_to({"type": "cancel", "id": "now"})  # held too: let it end
    assert (await frames_until_end(second, "now"))[-1]["type"] == "done"
    await first.disconnect()
    await second.disconnect()


@override_settings(GATEHOUSE_WS_MESSAGES_PER_WINDOW=3, GATEHOUSE_WS_MESSAGE_WINDOW_SECONDS=60)
async def test_a_burst_past_the_message_budget_is_refused_and_a_flood_closes(bob: User) -> None:
    communicator = communicator_for(token=await access_token(bob))
    await communicator.connect()
    for index in range(3):  # within budget: answered (a cancel of nothing is "not_found")
        await communicator.send_json_to({"type": "cancel", "id": f"c{index}"})
        assert (await communicator.receive_json_from())["code"] == "not_found"
    await communicator.send_json_to({"type": "cancel", "id": "over"})
    refused = await communicator.receive_json_from()
    assert (refused["code"], refused["message"]) == (
        "rate_limited",
        "Too many messages on this connection; slow down.",
    )
    for _ in range(2):  # still sending while refused: a whole budget refused in a row is a flood
        await communicator.send_json_to({"type": "cancel", "id": "more"})
    assert (await communicator.receive_json_from())["code"] == "rate_limited"
    assert await communicator.receive_output(timeout=5) == {"type": "websocket.close", "code": 1008}
    await communicator.disconnect()


@override_settings(GATEHOUSE_WS_IDLE_TIMEOUT=0.5)
async def test_an_idle_connection_is_closed(bob: User) -> None:
    communicator = communicator_for(token=await access_token(bob))
    await communicator.connect()
    assert await communicator.receive_output(timeout=5) == {"type": "websocket.close", "code": 4408}
    await communicator.disconnect()


@override_settings(GATEHOUSE_TEST_HOLD_MODELS=HELD)
async def test_disconnecting_mid_stream_is_audited_as_cancelled(
    bob: User, demo_version: ModelVersion
) -> None:
    """The generation sees the cancel, stops, and writes its record itself (no event needed)."""
    communicator = communicator_for(token=await access_token(bob))
    await communicator.connect()
    await communicator.send_json_to(chat_frame("a", max_tokens=200, temperature=0.0))
    assert (await communicator.receive_json_from(timeout=30))["type"] == "start"
    assert (await communicator.receive_json_from(timeout=60))["type"] == "token"
    await communicator.disconnect()
    event = await eventually(lambda: AuditEvent.objects.filter(action="inference.completed").first())
    assert event.metadata["finish_reason"] == "cancelled"
    assert event.metadata["completion_tokens"] < 200


@override_settings(GATEHOUSE_TEST_HOLD_MODELS=HELD)
async def test_the_connection_answers_while_a_generation_streams(
    bob: User, demo_version: ModelVersion
) -> None:
    """Generation runs off the event loop: other frames are handled mid-stream."""
    communicator = communicator_for(token=await access_token(bob))
    await communicator.connect()
    await communicator.send_json_to(chat_frame("long", max_tokens=256, temperature=0.0))
    assert (await communicator.receive_json_from(timeout=30))["type"] == "start"
    assert (await communicator.receive_json_from(timeout=60))["type"] == "token"
    await communicator.send_to(text_data="not json")
    seen_after_bad_frame = []
    while True:
        frame = await communicator.receive_json_from(timeout=60)
        seen_after_bad_frame.append(frame["type"])
        if frame["type"] == "error":
            break
    assert "done" not in seen_after_bad_frame, "the error waited for the generation to finish"
    await communicator.send_json_to({"type": "cancel", "id": "long"})
    assert (await frames_until_end(communicator, "long"))[-1]["finish_reason"] == "cancelled"
    await communicator.disconnect()


async def test_tampered_weights_are_refused_and_audited(bob: User, demo_version: ModelVersion) -> None:
    version = await database_sync_to_async(ModelVersion.objects.get)(pk=demo_version.pk)
    version.manifest = {**version.manifest, "model.safetensors": "0" * 64}
    await database_sync_to_async(version.save)()
    communicator = communicator_for(token=await access_token(bob), headers=[(b"x-request-id", b"tamper-1")])
    await communicator.connect()
    await communicator.send_json_to(chat_frame("c1"))
    frames = await frames_until_end(communicator, "c1")
    assert frames[-1]["type"] == "error"
    assert frames[-1]["code"] == "unavailable"
    assert frames[-1]["message"] == "The model's files failed verification."
    await communicator.disconnect()
    refused = await database_sync_to_async(AuditEvent.objects.get)(action="model.version.load_refused")
    assert refused.outcome == AuditEvent.Outcome.DENIED
    assert refused.request_id == "tamper-1"
    assert "changed ['model.safetensors']" in refused.metadata["reason"]


async def test_a_second_version_serves_after_promotion_and_the_first_after_rollback(
    alice: User, bob: User, demo_version: ModelVersion
) -> None:
    from inference.services import model_version_promote, model_version_rollback
    from tests.inference.test_lifecycle import register_second_version

    v2 = await database_sync_to_async(register_second_version)(demo_version.model, actor=alice)
    await database_sync_to_async(model_version_promote)(version=v2, actor=alice)
    communicator = communicator_for(token=await access_token(bob))
    await communicator.connect()
    await communicator.send_json_to(chat_frame("on-v2", max_tokens=3))
    frames = await frames_until_end(communicator, "on-v2")
    assert frames[0]["version"] == "v2"
    assert frames[-1]["type"] == "done"
    await database_sync_to_async(model_version_rollback)(model=demo_version.model, actor=alice)
    await communicator.send_json_to(chat_frame("on-v1", max_tokens=3))
    frames = await frames_until_end(communicator, "on-v1")
    assert frames[0]["version"] == "v1"
    assert frames[-1]["type"] == "done"
    await communicator.disconnect()


@override_settings(GATEHOUSE_GENERATION_START_TIMEOUT=1.0)
async def test_a_generation_nothing_runs_ends_unavailable_and_audited(
    bob: User, demo_version: ModelVersion, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def lost(*, job: object) -> None:
        """A job that no worker will ever take (a dead worker, a dropped message)."""

    monkeypatch.setattr("inference.consumers.generation_dispatch", lost)
    communicator = communicator_for(token=await access_token(bob))
    await communicator.connect()
    await communicator.send_json_to(chat_frame("lost"))
    frames = await frames_until_end(communicator, "lost")
    assert frames[-1] == {
        "type": "error",
        "id": "lost",
        "code": "unavailable",
        "message": "The model did not respond in time; try again.",
    }
    await communicator.disconnect()
    event = await database_sync_to_async(AuditEvent.objects.get)(action="inference.failed")
    assert event.metadata["reason"] == "no model worker took the request"


@override_settings(GATEHOUSE_INFERENCE_MAX_QUEUE=0)
async def test_a_full_queue_refuses_at_once_without_start_and_is_audited(
    bob: User, demo_version: ModelVersion
) -> None:
    communicator = communicator_for(token=await access_token(bob))
    await communicator.connect()
    await communicator.send_json_to(chat_frame("busy"))
    assert await frames_until_end(communicator, "busy") == [
        {
            "type": "error",
            "id": "busy",
            "code": "unavailable",
            "message": "The model is busy; try again shortly.",
        }
    ]
    # The connection lives on and answers the next frame.
    await communicator.send_json_to({"type": "cancel", "id": "busy"})
    assert (await communicator.receive_json_from())["code"] == "not_found"
    await communicator.disconnect()
    event = await database_sync_to_async(AuditEvent.objects.get)(action="inference.failed")
    assert event.metadata["code"] == "unavailable"
    assert event.metadata["reason"].startswith("queue full")


@pytest.mark.skipif(not PRODUCTION, reason="queues per model exist only with Celery (production profile)")
@override_settings(GATEHOUSE_GENERATION_START_TIMEOUT=3.0)
async def test_a_model_no_worker_serves_answers_unavailable_promptly(alice: User, bob: User) -> None:
    from inference.services import model_register, model_version_promote
    from tests.inference.test_lifecycle import register_second_version

    def orphan() -> None:
        model = model_register(name="orphan-model", open_to_all=True, actor=alice)
        model_version_promote(version=register_second_version(model, actor=alice, label="v1"), actor=alice)

    await database_sync_to_async(orphan)()
    communicator = communicator_for(token=await access_token(bob))
    await communicator.connect()
    await communicator.send_json_to(chat_frame("nobody", model="orphan-model"))
    frames = await frames_until_end(communicator, "nobody")
    assert frames[0]["type"] == "start"
    assert frames[-1]["code"] == "unavailable"
    await communicator.disconnect()


def test_a_generation_is_recorded_once_even_if_its_final_event_is_lost(
    bob: User, demo_version: ModelVersion
) -> None:
    from inference.generation import generation_run
    from inference.relay import ReaderGone
    from tests.inference.jobs import generation_job

    class ClientLeftAtTheEnd:
        def send(self, message: dict[str, Any]) -> None:
            if message["type"] == "generation.finished":
                raise ReaderGone("gone")

    job = generation_job(
        bob,
        demo_version,
        generation_id="g1",
        messages=[{"role": "user", "content": "hi"}],
        params={"max_tokens": 3},
    )
    generation_run(job=job, relay=ClientLeftAtTheEnd())  # type: ignore[arg-type]
    records = list(AuditEvent.objects.filter(action__startswith="inference."))
    assert [event.action for event in records] == ["inference.completed"]
    assert records[0].metadata["completion_tokens"] >= 1
    assert "reason" not in records[0].metadata  # not also recorded as "client gone"


@pytest.mark.skipif(not PRODUCTION, reason="the caches keep values only with Redis")
async def test_after_the_caches_lapse_a_connection_reloads_its_caller_in_one_transaction(
    bob: User, demo_version: ModelVersion, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The handshake's bearer and each chat frame's recheck read the caller from the caches the
    # /v1 door trusts; after a lapse each reloads in one transaction, not one per query
    # (mutation: either reload outside one, and its queries show up autocommitted).
    token = await access_token(bob)
    communicator = communicator_for(token=token)
    assert (await communicator.connect())[0]
    await communicator.send_json_to(chat_frame("warm", model=demo_version.model.name))
    await frames_until_end(communicator, "warm")
    await communicator.disconnect()
    local_caches_clear()  # as when the entries lapse
    communicator = communicator_for(token=token)
    with transactions_counted(monkeypatch) as handshake:
        assert (await communicator.connect())[0]
    assert handshake.autocommitted == []
    assert handshake.opened == 1
    local_caches_clear()
    with transactions_counted(monkeypatch) as chat:
        await communicator.send_json_to(chat_frame("after", model=demo_version.model.name))
        frames = await frames_until_end(communicator, "after")
    assert frames[-1]["type"] == "done", frames[-1]
    assert chat.autocommitted == []
    await communicator.disconnect()

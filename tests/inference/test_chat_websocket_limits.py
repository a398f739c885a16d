"""/ws/chat/ against frames the decoder gives up on, and the per-user bound on open connections."""

import asyncio
import json

import pytest
from channels.db import database_sync_to_async
from django.test import override_settings

from accounts.models import User
from inference.connection_slots import (
    LEASE_SECONDS,
    ConnectionSlot,
    connection_slot_acquire,
    connection_slot_release,
)
from inference.consumers import SLOT_GRACE_SECONDS
from inference.models import ModelVersion
from tests.inference.test_connection_slots import _age, _seconds_left
from tests.inference.websocket import access_token, chat_frame, communicator_for, frames_until_end
from tests.waiting import eventually

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("inference_backend")]

UNREADABLE_FRAMES = {
    "nested-5000-deep": "[" * 5000 + "]" * 5000,
    "integer-5000-digits": '{"type": "chat", "id": "big", "max_tokens": ' + "9" * 5000 + "}",
}


@pytest.mark.parametrize("text", UNREADABLE_FRAMES.values(), ids=UNREADABLE_FRAMES.keys())
async def test_an_unreadable_frame_is_invalid_and_the_connection_still_chats(
    bob: User, demo_version: ModelVersion, text: str
) -> None:
    communicator = communicator_for(token=await access_token(bob))
    assert (await communicator.connect())[0]
    await communicator.send_to(text_data=text)
    error = await communicator.receive_json_from(timeout=10)
    assert (error["type"], error["id"], error["code"]) == ("error", None, "invalid")
    assert error["message"].startswith("The frame is not valid JSON")
    await communicator.send_json_to(chat_frame("after", max_tokens=3))
    assert (await frames_until_end(communicator, "after"))[-1]["type"] == "done"
    await communicator.disconnect()


@override_settings(GATEHOUSE_WS_MAX_CONNECTIONS_PER_USER=2)
async def test_connections_past_the_per_user_cap_are_refused_until_one_closes(
    bob: User, alice: User, demo_version: ModelVersion
) -> None:
    token = await access_token(bob)
    first, second = communicator_for(token=token), communicator_for(token=token)
    assert (await first.connect())[0]
    assert (await second.connect())[0]

    third = communicator_for(token=token)
    assert (await third.connect(timeout=5))[0]  # accepted only to be told why, then closed
    refused = await third.receive_json_from(timeout=10)
    assert refused == {
        "type": "error",
        "id": None,
        "code": "rate_limited",
        "message": "You already have 2 chat connections open; close one first.",
    }
    closed = await third.receive_output(timeout=5)
    assert closed["type"] == "websocket.close"
    assert closed["code"] == 4429
    assert "2 chat connections" in closed["reason"]
    await third.wait()

    # Another user is not affected.
    other = communicator_for(token=await access_token(alice))
    assert (await other.connect())[0]
    await other.send_json_to(chat_frame("a", max_tokens=2))
    assert (await frames_until_end(other, "a"))[-1]["type"] == "done"
    await other.disconnect()

    # Closing a connection gives its place back.
    await first.disconnect()
    fourth = communicator_for(token=token)
    assert (await fourth.connect())[0]
    await fourth.send_json_to(chat_frame("b", max_tokens=2))
    assert (await frames_until_end(fourth, "b"))[-1]["type"] == "done"
    await fourth.disconnect()
    await second.disconnect()


@override_settings(GATEHOUSE_WS_MAX_CONNECTIONS_PER_USER=1)
async def test_a_place_freed_within_the_grace_is_given_to_the_waiting_connection(
    bob: User, demo_version: ModelVersion
) -> None:
    # The server frees a closed connection's place after its close handshake, so a client
    # that closes and reconnects at once can arrive while the place is still held.
    held = await database_sync_to_async(connection_slot_acquire)(user_id=bob.pk, limit=1)
    assert held is not None

    async def close_late() -> None:
        await asyncio.sleep(SLOT_GRACE_SECONDS / 3)
        await database_sync_to_async(connection_slot_release)(slot=held)

    closing = asyncio.create_task(close_late())
    communicator = communicator_for(token=await access_token(bob))
    assert (await communicator.connect(timeout=5))[0]
    await closing
    await communicator.send_json_to(chat_frame("late", max_tokens=2))
    assert (await frames_until_end(communicator, "late"))[-1]["type"] == "done"
    await communicator.disconnect()


@override_settings(GATEHOUSE_WS_MAX_CONNECTIONS_PER_USER=1)
async def test_an_open_connection_renews_its_lease_and_gives_it_back_on_close(
    bob: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("inference.consumers.RENEW_EVERY_SECONDS", 0)  # at every watchdog tick
    communicator = communicator_for(token=await access_token(bob))
    assert (await communicator.connect())[0]
    slot = ConnectionSlot(key=f"inference:ws-connections:{bob.pk}:0", holder="")
    await database_sync_to_async(_age)(slot, LEASE_SECONDS - 2)  # about to run out
    await eventually(lambda: _seconds_left(slot) > LEASE_SECONDS - 5 or None)
    await communicator.disconnect()
    again = await database_sync_to_async(connection_slot_acquire)(user_id=bob.pk, limit=1)
    assert again is not None


def test_the_unreadable_frames_really_are_unreadable() -> None:
    for text in UNREADABLE_FRAMES.values():
        with pytest.raises((RecursionError, ValueError)):
            json.loads(text)

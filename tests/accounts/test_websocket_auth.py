"""The websocket accepts the same credentials as HTTP, plus single-use tickets."""

from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.test import override_settings
from rest_framework.test import APIClient

from accounts.models import User
from accounts.services import api_key_create, api_key_revoke, user_deactivate
from inference.models import ModelVersion
from tests.accounts.helpers import bearer_client, login
from tests.inference.websocket import FRAME_TIMEOUT, chat_frame, communicator_for, frames_until_end
from tests.waiting import completed_audit_event, eventually

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("inference_backend")]

TICKET = "/api/ws-ticket/"


def _ticket_for_session(user: User) -> str:
    client = APIClient()
    client.force_login(user)
    response = client.post(TICKET)
    assert response.status_code == 201
    assert response.json()["expires_in"] <= 60
    return str(response.json()["ticket"])


async def _connect_with_ticket(ticket: str) -> tuple[bool, object]:
    from channels.testing import WebsocketCommunicator

    from gatehouse.asgi import application

    communicator = WebsocketCommunicator(application, f"/ws/chat/?ticket={ticket}")
    connected, code = await communicator.connect()
    if connected:
        await communicator.disconnect()
    return connected, code


async def test_a_ticket_opens_one_connection_only(bob: User) -> None:
    ticket = await database_sync_to_async(_ticket_for_session)(bob)
    assert (await _connect_with_ticket(ticket))[0]
    assert not (await _connect_with_ticket(ticket))[0]


async def test_a_made_up_ticket_is_refused(db: None) -> None:
    assert not (await _connect_with_ticket("not-a-ticket"))[0]


async def test_a_long_lived_token_in_the_query_string_is_not_accepted(bob: User) -> None:
    pair = await database_sync_to_async(login)(bob)
    from channels.testing import WebsocketCommunicator

    from gatehouse.asgi import application

    connected, _ = await WebsocketCommunicator(application, f"/ws/chat/?token={pair.access}").connect()
    assert not connected


async def test_an_api_key_with_the_chat_scope_can_chat(bob: User, demo_version: ModelVersion) -> None:
    _, raw = await database_sync_to_async(api_key_create)(user=bob, name="ws", scopes=["chat"], actor=bob)
    communicator = communicator_for(token=raw)
    assert (await communicator.connect())[0]
    await communicator.send_json_to(chat_frame("k1", max_tokens=3))
    assert (await frames_until_end(communicator, "k1"))[-1]["type"] == "done"
    await communicator.disconnect()


async def test_an_api_key_without_the_chat_scope_is_refused(bob: User) -> None:
    _, raw = await database_sync_to_async(api_key_create)(
        user=bob, name="ro", scopes=["models:read"], actor=bob
    )
    connected, code = await communicator_for(token=raw).connect()
    assert not connected
    assert code == 4403


async def _frames_until_error(communicator: Any) -> list[dict[str, Any]]:
    frames = [await communicator.receive_json_from(timeout=10)]
    while frames[-1]["type"] != "error":
        frames.append(await communicator.receive_json_from(timeout=10))
    return frames


# Held after its first tokens until cancelled, so the revocation never races the answer's end.
@override_settings(GATEHOUSE_TEST_HOLD_MODELS=("demo-tiny",))
async def test_revoking_a_key_closes_its_open_connection_at_once_mid_stream(
    bob: User, demo_version: ModelVersion
) -> None:
    key, raw = await database_sync_to_async(api_key_create)(user=bob, name="ws", scopes=["chat"], actor=bob)
    communicator = communicator_for(token=raw)
    assert (await communicator.connect())[0]
    # Greedy and at the model's cap: still streaming when the key is revoked.
    await communicator.send_json_to(chat_frame("long", max_tokens=256, temperature=0.0))
    assert (await communicator.receive_json_from(timeout=FRAME_TIMEOUT))["type"] == "start"
    await database_sync_to_async(api_key_revoke)(api_key=key, actor=bob)
    # No frame from the client: the revocation itself reaches the connection.
    *streamed, error = await _frames_until_error(communicator)
    assert all(frame["type"] == "token" for frame in streamed)
    assert (error["code"], error["message"]) == ("forbidden", "This API key has been revoked.")
    assert await communicator.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401}
    await communicator.disconnect()
    # The generation was cancelled with the connection and audited as such.
    event = await eventually(completed_audit_event)
    assert event.metadata["finish_reason"] == "cancelled"
    assert event.metadata["completion_tokens"] < 256


async def test_deactivating_a_user_closes_their_open_connection_at_once(
    alice: User, bob: User, demo_version: ModelVersion
) -> None:
    pair = await database_sync_to_async(login)(bob)
    communicator = communicator_for(token=pair.access)
    assert (await communicator.connect())[0]
    await database_sync_to_async(user_deactivate)(user=bob, actor=alice)
    (error,) = await _frames_until_error(communicator)
    assert error["code"] == "forbidden"
    assert await communicator.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401}
    await communicator.disconnect()


async def test_another_users_revocation_leaves_a_connection_alone(
    alice: User, bob: User, demo_version: ModelVersion
) -> None:
    communicator = communicator_for(token=(await database_sync_to_async(login)(bob)).access)
    assert (await communicator.connect())[0]
    key, _ = await database_sync_to_async(api_key_create)(
        user=alice, name="other", scopes=["chat"], actor=alice
    )
    await database_sync_to_async(api_key_revoke)(api_key=key, actor=alice)
    await communicator.send_json_to(chat_frame("still-fine", max_tokens=3))
    assert (await frames_until_end(communicator, "still-fine"))[-1]["type"] == "done"
    await communicator.disconnect()


async def test_a_revoked_key_cannot_open_a_connection(bob: User) -> None:
    key, raw = await database_sync_to_async(api_key_create)(user=bob, name="ws", scopes=["chat"], actor=bob)
    await database_sync_to_async(api_key_revoke)(api_key=key, actor=bob)
    assert not (await communicator_for(token=raw).connect())[0]


def test_an_api_key_without_chat_scope_cannot_get_a_ticket(bob: User) -> None:
    _, raw = api_key_create(user=bob, name="ro", scopes=["models:read"], actor=bob)
    assert bearer_client(raw).post(TICKET).status_code == 403


def test_tickets_need_a_login(db: None) -> None:
    assert APIClient().post(TICKET).status_code == 401

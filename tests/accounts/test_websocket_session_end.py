"""An open websocket lives as long as the credential that opened it, whatever its kind.

Logout, logout-all, a password change and deactivation reach open connections at once
(close 4401); a connection whose credential died without a notice (the channel layer is
best effort) is refused at its next chat frame.
"""

import asyncio
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import User
from accounts.services import TokenPair, api_key_create, user_deactivate
from tests.accounts.helpers import bearer_client, login
from tests.inference.websocket import chat_frame, communicator_for

pytestmark = pytest.mark.django_db(transaction=True)

LOGOUT = "/api/auth/logout/"
TICKET = "/api/ws-ticket/"
NEW_PASSWORD = "a-brand-new-passphrase-42"


def _console(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _session_cookie(console: Client) -> list[tuple[bytes, bytes]]:
    name = settings.SESSION_COOKIE_NAME
    return [(b"cookie", f"{name}={console.cookies[name].value}".encode())]


def _ticket(client: Any) -> str:
    response = client.post(TICKET)
    assert response.status_code == 201, response.content
    return str(response.json()["ticket"])


def _password_change(user: User) -> None:
    user.set_password(NEW_PASSWORD)
    user.save()


async def _open(communicator: WebsocketCommunicator) -> WebsocketCommunicator:
    connected, code = await communicator.connect()
    assert connected, code
    return communicator


async def _open_with_ticket(ticket: str) -> WebsocketCommunicator:
    from gatehouse.asgi import application

    return await _open(WebsocketCommunicator(application, f"/ws/chat/?ticket={ticket}"))


async def _closed_4401(communicator: WebsocketCommunicator) -> dict[str, Any]:
    """The connection was told `forbidden` and closed with 4401, without a frame from the client."""
    error = await communicator.receive_json_from(timeout=10)
    assert (error["type"], error["code"]) == ("error", "forbidden"), error
    assert await communicator.receive_output(timeout=10) == {"type": "websocket.close", "code": 4401}
    await communicator.disconnect()
    return error


async def _next_frame_refused(communicator: WebsocketCommunicator) -> dict[str, Any]:
    """The next chat frame is answered `forbidden` and the connection closes with 4401."""
    await communicator.send_json_to(chat_frame("after"))
    error = await communicator.receive_json_from(timeout=10)
    # A frame the re-check let through gets a `start` (or another error) instead.
    assert (error["type"], error.get("code"), error.get("id")) == ("error", "forbidden", "after"), error
    assert await communicator.receive_output(timeout=10) == {"type": "websocket.close", "code": 4401}
    await communicator.disconnect()
    return error


async def _still_open(communicator: WebsocketCommunicator) -> None:
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


# --- JWT -------------------------------------------------------------------------------------


async def test_logging_out_a_jwt_session_closes_its_socket(bob: User) -> None:
    pair: TokenPair = await database_sync_to_async(login)(bob)
    communicator = await _open(communicator_for(token=pair.access))
    response = await database_sync_to_async(bearer_client(pair.access).post)(LOGOUT, {}, format="json")
    assert response.json() == {"sessions_ended": 1}
    await _closed_4401(communicator)


async def test_logout_all_closes_every_jwt_socket(bob: User) -> None:
    first, second = [await database_sync_to_async(login)(bob) for _ in range(2)]
    sockets = [await _open(communicator_for(token=pair.access)) for pair in (first, second)]
    await database_sync_to_async(bearer_client(first.access).post)(LOGOUT, {"all": True}, format="json")
    for communicator in sockets:
        await _closed_4401(communicator)


async def test_a_password_change_closes_jwt_sockets(bob: User) -> None:
    pair = await database_sync_to_async(login)(bob)
    communicator = await _open(communicator_for(token=pair.access))
    await database_sync_to_async(_password_change)(bob)
    await _closed_4401(communicator)


async def test_a_jwt_socket_issued_before_tokens_valid_after_is_refused_at_its_next_frame(
    bob: User,
) -> None:
    pair = await database_sync_to_async(login)(bob)
    communicator = await _open(communicator_for(token=pair.access))
    # No notice reaches the socket (as when the channel layer drops one): the frame finds out.
    later = timezone.now() + timezone.timedelta(seconds=2)
    await database_sync_to_async(User.objects.filter(pk=bob.pk).update)(tokens_valid_after=later)
    error = await _next_frame_refused(communicator)
    assert error["message"] == "This session has ended; log in again."


# --- tickets ---------------------------------------------------------------------------------


async def test_a_socket_opened_with_a_ticket_ends_with_the_jwt_session_that_issued_it(bob: User) -> None:
    pair = await database_sync_to_async(login)(bob)
    ticket = await database_sync_to_async(_ticket)(bearer_client(pair.access))
    communicator = await _open_with_ticket(ticket)
    await database_sync_to_async(bearer_client(pair.access).post)(LOGOUT, {}, format="json")
    await _closed_4401(communicator)


async def test_a_password_change_closes_a_socket_opened_with_a_ticket(bob: User) -> None:
    pair = await database_sync_to_async(login)(bob)
    ticket = await database_sync_to_async(_ticket)(bearer_client(pair.access))
    communicator = await _open_with_ticket(ticket)
    await database_sync_to_async(_password_change)(bob)
    await _closed_4401(communicator)


async def test_a_ticket_socket_dies_at_its_next_frame_once_its_session_is_revoked_silently(
    bob: User,
) -> None:
    from accounts.models import RefreshFamily

    pair = await database_sync_to_async(login)(bob)
    ticket = await database_sync_to_async(_ticket)(bearer_client(pair.access))
    communicator = await _open_with_ticket(ticket)
    await database_sync_to_async(RefreshFamily.objects.filter(user=bob).update)(
        revoked_at=timezone.now(), revoked_reason="logout"
    )
    await _next_frame_refused(communicator)


async def test_console_logout_closes_a_socket_opened_with_a_ticket_from_that_session(alice: User) -> None:
    console = await database_sync_to_async(_console)(alice)
    ticket = await database_sync_to_async(_ticket)(console)
    communicator = await _open_with_ticket(ticket)
    await database_sync_to_async(console.post)("/admin/logout/")
    await _closed_4401(communicator)


async def test_a_ticket_from_an_api_key_survives_logout_all_but_not_deactivation(
    alice: User, bob: User
) -> None:
    _, raw = await database_sync_to_async(api_key_create)(user=bob, name="ws", scopes=["chat"], actor=bob)
    communicator = await _open_with_ticket(await database_sync_to_async(_ticket)(bearer_client(raw)))
    pair = await database_sync_to_async(login)(bob)
    await database_sync_to_async(bearer_client(pair.access).post)(LOGOUT, {"all": True}, format="json")
    assert await communicator.receive_nothing(timeout=0.3)
    await database_sync_to_async(user_deactivate)(user=bob, actor=alice)
    await _closed_4401(communicator)


# --- console session cookie ------------------------------------------------------------------


async def test_console_logout_closes_the_sessions_socket(alice: User) -> None:
    console = await database_sync_to_async(_console)(alice)
    communicator = await _open(communicator_for(headers=_session_cookie(console)))
    response = await database_sync_to_async(console.post)("/admin/logout/")
    assert response.status_code == 200
    await _closed_4401(communicator)


async def test_a_flushed_console_session_refuses_the_next_frame(alice: User) -> None:
    from django.contrib.sessions.models import Session

    console = await database_sync_to_async(_console)(alice)
    communicator = await _open(communicator_for(headers=_session_cookie(console)))
    await database_sync_to_async(Session.objects.all().delete)()
    error = await _next_frame_refused(communicator)
    assert error["message"] == "This console session has ended; log in again."


async def test_logout_all_closes_console_session_sockets(alice: User) -> None:
    console = await database_sync_to_async(_console)(alice)
    communicator = await _open(communicator_for(headers=_session_cookie(console)))
    pair = await database_sync_to_async(login)(alice)
    await database_sync_to_async(bearer_client(pair.access).post)(LOGOUT, {"all": True}, format="json")
    await _closed_4401(communicator)
    # The console session itself is over too.
    response = await database_sync_to_async(console.get)("/admin/")
    assert response.status_code == 302


async def test_a_password_change_closes_console_session_sockets(alice: User) -> None:
    console = await database_sync_to_async(_console)(alice)
    communicator = await _open(communicator_for(headers=_session_cookie(console)))
    await database_sync_to_async(_password_change)(alice)
    await _closed_4401(communicator)


async def test_deactivation_closes_console_session_sockets(alice: User, olga: User) -> None:
    console = await database_sync_to_async(_console)(olga)
    communicator = await _open(communicator_for(headers=_session_cookie(console)))
    await database_sync_to_async(user_deactivate)(user=olga, actor=alice)
    await _closed_4401(communicator)


# --- API keys --------------------------------------------------------------------------------


async def test_an_api_key_socket_survives_logout_all_and_a_password_change(bob: User) -> None:
    """Keys are credentials of their own: only revoking the key or disabling the user ends them."""
    _, raw = await database_sync_to_async(api_key_create)(user=bob, name="ws", scopes=["chat"], actor=bob)
    communicator = await _open(communicator_for(token=raw))
    pair = await database_sync_to_async(login)(bob)
    await database_sync_to_async(bearer_client(pair.access).post)(LOGOUT, {"all": True}, format="json")
    await database_sync_to_async(_password_change)(bob)
    await _still_open(communicator)


async def test_deactivation_closes_an_api_key_socket(alice: User, bob: User) -> None:
    _, raw = await database_sync_to_async(api_key_create)(user=bob, name="ws", scopes=["chat"], actor=bob)
    communicator = await _open(communicator_for(token=raw))
    await database_sync_to_async(user_deactivate)(user=bob, actor=alice)
    error = await _closed_4401(communicator)
    assert error["message"] == "This account is disabled."


async def test_an_api_key_socket_is_refused_at_its_next_frame_once_the_key_expired(bob: User) -> None:
    from accounts.models import ApiKey

    key, raw = await database_sync_to_async(api_key_create)(user=bob, name="ws", scopes=["chat"], actor=bob)
    # It expires by the clock, with no change to announce: the key the connection holds (and
    # any process's cache of it) must still be refused once its time is up.
    expires_at = timezone.now() + timezone.timedelta(seconds=3)
    await database_sync_to_async(ApiKey.objects.filter(pk=key.pk).update)(expires_at=expires_at)
    communicator = await _open(communicator_for(token=raw))
    await asyncio.sleep((expires_at - timezone.now()).total_seconds() + 0.1)
    error = await _next_frame_refused(communicator)
    assert error["message"] == "This API key has expired."


async def test_a_socket_is_refused_at_its_next_frame_once_its_session_outlived_its_lifetime(
    bob: User, settings: Any
) -> None:
    from accounts.models import RefreshFamily

    pair = await database_sync_to_async(login)(bob)
    communicator = await _open(communicator_for(token=pair.access))
    settings.GATEHOUSE_SESSION_MAX_AGE = 3600
    started = timezone.now() - timezone.timedelta(seconds=3601)
    await database_sync_to_async(RefreshFamily.objects.filter(user=bob).update)(created_at=started)
    error = await _next_frame_refused(communicator)
    assert error["message"] == "This session has ended; log in again."


def test_tickets_need_a_live_credential(bob: User) -> None:
    pair = login(bob)
    bearer_client(pair.access).post(LOGOUT, {}, format="json")
    assert APIClient().post(TICKET).status_code == 401
    assert bearer_client(pair.access).post(TICKET).status_code == 401


# --- no notice reaches the socket: only the re-check on the next chat frame can refuse it -----


@pytest.fixture
def notices_lost(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Credential-change notices are sent into the void, as when the channel layer drops them.

    Returns one entry per notice that would have been sent, so a test can show the change it
    made did try to tell the socket (and that only the per-frame re-check is left to catch it).
    The tests using it serve demo-tiny, so a frame the re-check let through would start a chat.
    """
    lost: list[int] = []

    def no_layer() -> None:
        lost.append(1)

    monkeypatch.setattr("accounts.credential_events.get_channel_layer", no_layer)
    return lost


@pytest.mark.usefixtures("demo_version")
async def test_a_revoked_key_is_refused_at_its_next_frame_when_no_notice_arrives(
    bob: User, notices_lost: list[int]
) -> None:
    from accounts.services import api_key_revoke

    key, raw = await database_sync_to_async(api_key_create)(user=bob, name="ws", scopes=["chat"], actor=bob)
    communicator = await _open(communicator_for(token=raw))
    await database_sync_to_async(api_key_revoke)(api_key=key, actor=bob)
    assert notices_lost, "revoking the key did not try to tell its sockets"
    error = await _next_frame_refused(communicator)
    assert error["message"] == "This API key has been revoked."


@pytest.mark.usefixtures("demo_version")
async def test_a_logged_out_jwt_session_is_refused_at_its_next_frame_when_no_notice_arrives(
    bob: User, notices_lost: list[int]
) -> None:
    pair = await database_sync_to_async(login)(bob)
    communicator = await _open(communicator_for(token=pair.access))
    response = await database_sync_to_async(bearer_client(pair.access).post)(LOGOUT, {}, format="json")
    assert response.json() == {"sessions_ended": 1}
    assert notices_lost, "the logout did not try to tell its sockets"
    error = await _next_frame_refused(communicator)
    assert error["message"] == "This session has ended; log in again."


@pytest.mark.usefixtures("demo_version")
async def test_a_reused_refresh_token_ends_the_sockets_of_its_whole_session(
    bob: User, notices_lost: list[int]
) -> None:
    """Reuse ends the family: sockets on the old and the rotated access token both go."""
    refresh = "/api/auth/token/refresh/"
    first = await database_sync_to_async(login)(bob)
    rotated = await database_sync_to_async(APIClient().post)(
        refresh, {"refresh": first.refresh}, format="json"
    )
    assert rotated.status_code == 200, rotated.content
    sockets = [
        await _open(communicator_for(token=first.access)),
        await _open(communicator_for(token=rotated.json()["access"])),
    ]
    reuse = await database_sync_to_async(APIClient().post)(refresh, {"refresh": first.refresh}, format="json")
    assert reuse.status_code == 401
    assert "already used" in reuse.json()["detail"]
    for communicator in sockets:
        error = await _next_frame_refused(communicator)
        assert error["message"] == "This session has ended; log in again."
    assert notices_lost, "the reuse did not try to tell its sockets"


async def test_a_reused_refresh_token_closes_its_sessions_sockets_at_once(bob: User) -> None:
    refresh = "/api/auth/token/refresh/"
    first = await database_sync_to_async(login)(bob)
    rotated = await database_sync_to_async(APIClient().post)(
        refresh, {"refresh": first.refresh}, format="json"
    )
    communicator = await _open(communicator_for(token=rotated.json()["access"]))
    reuse = await database_sync_to_async(APIClient().post)(refresh, {"refresh": first.refresh}, format="json")
    assert reuse.status_code == 401
    error = await _closed_4401(communicator)
    assert error["message"] == "This session has ended; log in again."


@pytest.mark.usefixtures("demo_version")
async def test_a_key_that_expires_while_its_socket_is_open_is_refused_at_its_next_frame(
    bob: User, notices_lost: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing happens when a key expires: no service runs, no notice is sent. The clock moves."""
    issued = timezone.now()
    _, raw = await database_sync_to_async(api_key_create)(
        user=bob, name="ws", scopes=["chat"], actor=bob, expires_at=issued + timezone.timedelta(hours=1)
    )
    communicator = await _open(communicator_for(token=raw))
    later = issued + timezone.timedelta(hours=1, seconds=1)
    monkeypatch.setattr("django.utils.timezone.now", lambda: later)
    error = await _next_frame_refused(communicator)
    assert error["message"] == "This API key has expired."
    assert not notices_lost

"""A websocket ticket opens a connection only within its lifetime (TICKET_TTL_SECONDS, 30 s).

The lifetime is the ticket's own rule, checked against the clock when it is redeemed, not
only the cache entry's timeout: a cache that keeps an entry longer does not stretch it. The
clock is moved by patching `django.utils.timezone.now`, never by waiting.
"""

from datetime import datetime, timedelta
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from rest_framework.test import APIClient

from accounts.models import User
from accounts.tickets import TICKET_TTL_SECONDS
from accounts.websocket_auth import CLOSE_UNAUTHENTICATED

pytestmark = pytest.mark.django_db(transaction=True)

TICKET = "/api/ws-ticket/"


class Clock:
    """`django.utils.timezone.now`, fixed at a moment the test moves on by hand."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from django.utils import timezone

        self.now: datetime = timezone.now()
        monkeypatch.setattr("django.utils.timezone.now", lambda: self.now)

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch)


def _ticket(user: User) -> str:
    client = APIClient()
    client.force_login(user)
    response = client.post(TICKET)
    assert response.status_code == 201, response.content
    assert response.json()["expires_in"] == TICKET_TTL_SECONDS == 30
    return str(response.json()["ticket"])


async def _handshake(ticket: str) -> tuple[bool, Any]:
    from gatehouse.asgi import application

    communicator = WebsocketCommunicator(application, f"/ws/chat/?ticket={ticket}")
    connected, code = await communicator.connect()
    if connected:
        await communicator.disconnect()
    return connected, code


async def test_a_ticket_redeemed_at_29_seconds_opens_the_socket(bob: User, clock: Clock) -> None:
    ticket = await database_sync_to_async(_ticket)(bob)
    clock.advance(29)
    assert await _handshake(ticket) == (True, None)


async def test_a_ticket_redeemed_at_31_seconds_is_refused_at_the_handshake(bob: User, clock: Clock) -> None:
    ticket = await database_sync_to_async(_ticket)(bob)
    clock.advance(31)
    assert await _handshake(ticket) == (False, CLOSE_UNAUTHENTICATED)
    # Refused for good: going back in time does not revive it (it was spent when presented).
    clock.advance(-31)
    assert await _handshake(ticket) == (False, CLOSE_UNAUTHENTICATED)


async def test_a_ticket_expires_at_exactly_its_lifetime(bob: User, clock: Clock) -> None:
    ticket = await database_sync_to_async(_ticket)(bob)
    clock.advance(TICKET_TTL_SECONDS)
    assert await _handshake(ticket) == (False, CLOSE_UNAUTHENTICATED)

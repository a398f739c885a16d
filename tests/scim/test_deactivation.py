"""Deactivation through SCIM ends everything the person holds, at once, on the trail.

PATCH active=false (as Okta and as Entra ID send it), PUT active=false and DELETE all go
through `user_deactivate`: JWT sessions (refresh included), console sessions, API keys and
open websockets end, and the record names the SCIM token.
"""

from dataclasses import dataclass
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from accounts.models import User
from accounts.services import TokenPair, api_key_create
from audit.models import AuditEvent
from scim.models import ScimToken
from tests.accounts.helpers import bearer_client, login
from tests.conftest import PASSWORD
from tests.inference.websocket import communicator_for
from tests.scim.helpers import USERS, ScimClient, events, patch_body, token_new, user_body

pytestmark = pytest.mark.django_db(transaction=True)


@dataclass
class Person:
    """A SCIM-provisioned person signed in every way there is."""

    user: User
    scim_id: str
    session: TokenPair
    api_key: str
    console: Client


def _provisioned_and_signed_in(scim: ScimClient) -> Person:
    response = scim.post(USERS, user_body("dana"))
    assert response.status_code == 201, response.content
    # Provisioned people sign in with single sign-on; the test gives dana a password to stand in
    # for it, and staff status, so her console session is a real one.
    user = User.objects.get(username="dana")
    user.set_password(PASSWORD)
    user.is_staff = True
    user.save()
    _, raw_key = api_key_create(user=user, name="k", scopes=["chat", "models:read"], actor=user)
    console = Client()
    console.force_login(user)
    assert console.get("/admin/").status_code == 200
    return Person(user, response.json()["id"], login(user), raw_key, console)


def _session_cookie(console: Client) -> list[tuple[bytes, bytes]]:
    name = settings.SESSION_COOKIE_NAME
    return [(b"cookie", f"{name}={console.cookies[name].value}".encode())]


async def _open(communicator: WebsocketCommunicator) -> WebsocketCommunicator:
    connected, code = await communicator.connect()
    assert connected, code
    return communicator


async def _closed_4401(communicator: WebsocketCommunicator) -> None:
    error = await communicator.receive_json_from(timeout=10)
    assert (error["type"], error["code"]) == ("error", "forbidden"), error
    assert await communicator.receive_output(timeout=10) == {"type": "websocket.close", "code": 4401}
    await communicator.disconnect()


def _everything_refused(person: Person) -> None:
    assert bearer_client(person.session.access).get("/api/usage/").status_code == 401
    refreshed = bearer_client("").post(
        "/api/auth/token/refresh/", {"refresh": person.session.refresh}, format="json"
    )
    assert refreshed.status_code == 401, refreshed.content
    assert bearer_client(person.api_key).get("/v1/models").status_code == 401
    page = person.console.get("/admin/")
    assert page.status_code == 302
    assert "/admin/login/" in page["Location"]


async def _scenario(request: Any, *, deactivate: Any) -> tuple[Person, ScimToken]:
    alice: User = await database_sync_to_async(request.getfixturevalue)("alice")
    token, raw = await database_sync_to_async(token_new)("okta", alice)
    scim = ScimClient(raw)
    person = await database_sync_to_async(_provisioned_and_signed_in)(scim)
    sockets = [
        await _open(communicator_for(token=person.session.access)),
        await _open(communicator_for(token=person.api_key)),
        await _open(communicator_for(headers=_session_cookie(person.console))),
    ]
    response = await database_sync_to_async(deactivate)(scim, f"{USERS}/{person.scim_id}")
    assert response.status_code in (200, 204), response.content
    for communicator in sockets:
        await _closed_4401(communicator)
    await database_sync_to_async(_everything_refused)(person)
    return person, token


def _deactivation_recorded(person: Person, token: ScimToken) -> AuditEvent:
    (event,) = events("user.deactivated", about=person.user)
    assert event.actor_display == token.audit_display
    assert event.actor_kind == AuditEvent.ActorKind.SYSTEM
    assert event.metadata["after"] == {"is_active": False}
    assert event.metadata["sessions_ended"] == 1
    return event


async def test_okta_patch_without_a_path_ends_every_credential_at_once(request: Any) -> None:
    person, token = await _scenario(
        request,
        deactivate=lambda scim, path: scim.patch(
            path, patch_body({"op": "replace", "value": {"active": False}})
        ),
    )
    await database_sync_to_async(_deactivation_recorded)(person, token)


async def test_entra_patch_with_a_path_ends_every_credential_at_once(request: Any) -> None:
    person, token = await _scenario(
        request,
        deactivate=lambda scim, path: scim.patch(
            path, patch_body({"op": "Replace", "path": "active", "value": "False"})
        ),
    )
    await database_sync_to_async(_deactivation_recorded)(person, token)


async def test_put_with_active_false_ends_every_credential_at_once(request: Any) -> None:
    person, token = await _scenario(
        request, deactivate=lambda scim, path: scim.put(path, user_body("dana", active=False))
    )
    await database_sync_to_async(_deactivation_recorded)(person, token)


async def test_delete_ends_every_credential_at_once_and_unlinks(request: Any) -> None:
    person, token = await _scenario(request, deactivate=lambda scim, path: scim.delete(path))

    def recorded() -> None:
        _deactivation_recorded(person, token)
        (deprovisioned,) = events("scim.user.deprovisioned", about=person.user)
        assert deprovisioned.actor_display == token.audit_display
        assert User.objects.filter(pk=person.user.pk, is_active=False).exists()

    await database_sync_to_async(recorded)()


def test_reactivation_goes_through_user_activate(alice: User) -> None:
    token, raw = token_new("okta", alice)
    scim = ScimClient(raw)
    person = _provisioned_and_signed_in(scim)
    path = f"{USERS}/{person.scim_id}"
    assert (
        scim.patch(path, patch_body({"op": "replace", "path": "active", "value": False})).status_code == 200
    )
    assert bearer_client(person.api_key).get("/v1/models").status_code == 401
    response = scim.patch(path, patch_body({"op": "replace", "value": {"active": True}}))
    assert response.status_code == 200
    assert response.json()["active"] is True
    (activated,) = events("user.activated", about=person.user)
    assert activated.actor_display == token.audit_display
    assert activated.metadata == {"before": {"is_active": False}, "after": {"is_active": True}}
    # Sessions that deactivation ended stay ended; the key, a credential of its own, works again.
    assert bearer_client(person.session.access).get("/api/usage/").status_code == 401
    assert bearer_client(person.api_key).get("/v1/models").status_code == 200

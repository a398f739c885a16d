"""A new password ends every session signed in with the old one, however it was set."""

from unittest import mock

import pytest
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import RefreshFamily, User
from audit.models import AuditEvent
from tests.accounts.helpers import bearer_client, login
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "a-brand-new-passphrase-42"
PROTECTED = "/api/keys/"


def _console(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _refresh(raw: str) -> int:
    return APIClient().post("/api/auth/token/refresh/", {"refresh": raw}, format="json").status_code


def _changed_events() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action="auth.password.changed"))


def test_set_password_and_save_anywhere_ends_every_jwt_session(bob: User) -> None:
    sessions = [login(bob), login(bob)]
    bob.set_password(NEW_PASSWORD)
    bob.save()
    for pair in sessions:
        assert bearer_client(pair.access).get(PROTECTED).status_code == 401
        assert _refresh(pair.refresh) == 401
    assert set(RefreshFamily.objects.filter(user=bob).values_list("revoked_reason", flat=True)) == {
        "password_change"
    }
    bob.refresh_from_db()
    assert bob.tokens_valid_after is not None
    (event,) = _changed_events()
    assert (event.actor_display, event.target_id) == ("system", str(bob.pk))
    # The new password logs in as usual.
    response = APIClient().post(
        "/api/auth/token/", {"username": "bob", "password": NEW_PASSWORD}, format="json"
    )
    assert response.status_code == 200


def test_saving_a_user_without_a_new_password_ends_nothing(bob: User) -> None:
    pair = login(bob)
    bob.email = "bob@elsewhere.example"
    bob.save()
    bob.set_password(NEW_PASSWORD)  # a new hash that is not saved changes nothing
    bob.last_name = "Builder"
    bob.save(update_fields=["last_name"])
    assert bearer_client(pair.access).get(PROTECTED).status_code == 200
    assert _changed_events() == []


def test_a_password_hash_upgraded_at_login_is_not_a_password_change(bob: User, settings: object) -> None:
    pair = login(bob)
    # A stronger hasher first: the next login re-hashes bob's password (same password).
    settings.PASSWORD_HASHERS = [  # type: ignore[attr-defined]
        "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
        "django.contrib.auth.hashers.MD5PasswordHasher",
    ]
    login(bob)
    assert User.objects.get(pk=bob.pk).password.startswith("pbkdf2_sha1$")
    assert bearer_client(pair.access).get(PROTECTED).status_code == 200
    assert _changed_events() == []


def test_changing_ones_own_password_in_the_console_keeps_that_session_only(alice: User) -> None:
    here, elsewhere = _console(alice), _console(alice)
    pair = login(alice)
    response = here.post(
        "/admin/password_change/",
        {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert response.status_code == 302, response.content
    assert here.get("/admin/").status_code == 200
    assert elsewhere.get("/admin/").status_code == 302
    assert bearer_client(pair.access).get(PROTECTED).status_code == 401
    (event,) = _changed_events()
    assert (event.actor, event.target_id) == (alice, str(alice.pk))


def test_an_admin_resetting_a_users_password_ends_that_users_sessions(alice: User, olga: User) -> None:
    theirs, pair = _console(olga), login(olga)
    console = _console(alice)
    response = console.post(
        f"/admin/accounts/user/{olga.pk}/password/",
        {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "usable_password": "true"},
    )
    assert response.status_code == 302, response.content
    assert bearer_client(pair.access).get(PROTECTED).status_code == 401
    assert theirs.get("/admin/").status_code == 302
    # The admin's own session is untouched.
    assert console.get("/admin/").status_code == 200
    (event,) = _changed_events()
    assert (event.actor, event.target_id) == (alice, str(olga.pk))


def test_manage_py_changepassword_ends_the_users_sessions(bob: User) -> None:
    pair = login(bob)
    with mock.patch("getpass.getpass", return_value=NEW_PASSWORD):
        call_command("changepassword", "bob", stdout=mock.MagicMock())
    assert bearer_client(pair.access).get(PROTECTED).status_code == 401
    assert _refresh(pair.refresh) == 401
    (event,) = _changed_events()
    assert event.actor_display == "system"


@pytest.mark.django_db(transaction=True)
async def test_the_console_names_the_admin_who_reset_a_password_when_served_over_asgi(
    alice: User, olga: User
) -> None:
    from channels.db import database_sync_to_async
    from django.test import AsyncClient

    console = AsyncClient()
    await console.aforce_login(alice)
    response = await console.post(
        f"/admin/accounts/user/{olga.pk}/password/",
        {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "usable_password": "true"},
    )
    assert response.status_code == 302
    assert (await console.get("/admin/")).status_code == 200
    (event,) = await database_sync_to_async(_changed_events)()
    assert (event.actor_id, event.target_id) == (alice.pk, str(olga.pk))

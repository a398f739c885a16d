"""API keys: shown once, stored hashed, scoped, revocable, expiring, network-bound."""

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiKey, User
from accounts.services import api_key_create, api_key_revoke
from audit.models import AuditEvent
from audit.subjects import audit_pseudonym
from tests.accounts.helpers import bearer_client, login

KEYS = "/api/keys/"
MODELS = "/v1/models"


def _create(user: User, **overrides: object) -> tuple[ApiKey, str]:
    fields: dict[str, object] = {"name": "ci", "scopes": ["chat", "models:read"]}
    fields.update(overrides)
    return api_key_create(user=user, actor=user, **fields)  # type: ignore[arg-type]


def test_creating_a_key_shows_it_once_and_stores_only_a_hash(bob: User) -> None:
    client = bearer_client(login(bob).access)
    response = client.post(KEYS, {"name": "laptop", "scopes": ["chat"]}, format="json")
    assert response.status_code == 201
    created = response.json()
    raw = created["key"]
    assert raw.startswith("gk_")
    prefix, secret = raw[3:].split("_", 1)
    assert len(secret) >= 22  # 128+ bits of urlsafe base64
    row = ApiKey.objects.get(pk=created["id"])
    stored = " ".join(str(value) for value in ApiKey.objects.filter(pk=row.pk).values().first().values())
    assert secret not in stored
    listed = client.get(KEYS).json()
    assert [key["prefix"] for key in listed] == [f"gk_{prefix}"]
    assert "key" not in listed[0]
    assert raw not in str(listed)
    event = AuditEvent.objects.get(action="apikey.created")
    assert secret not in str(event.metadata)


def test_a_key_authenticates_and_is_refused_once_revoked(bob: User) -> None:
    key, raw = _create(bob)
    client = bearer_client(raw)
    assert client.get(MODELS).status_code == 200
    api_key_revoke(api_key=key, actor=bob)
    response = client.get(MODELS)
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "This API key has been revoked."
    assert AuditEvent.objects.filter(action="apikey.revoked").count() == 1


def test_revoking_through_the_api(bob: User) -> None:
    key, raw = _create(bob)
    owner = bearer_client(login(bob).access)
    assert owner.delete(f"{KEYS}{key.pk}/").status_code == 204
    assert bearer_client(raw).get(MODELS).status_code == 401
    assert owner.get(KEYS).json()[0]["revoked"] is True


def test_an_expired_key_is_refused(bob: User) -> None:
    key, raw = _create(bob, expires_at=timezone.now() + timedelta(hours=1))
    ApiKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert bearer_client(raw).get(MODELS).json()["error"]["message"] == "This API key has expired."


def test_a_key_bound_to_networks_works_only_from_them(bob: User) -> None:
    _, inside = _create(bob, allowed_networks=["127.0.0.0/8"])
    _, outside = _create(bob, name="office", allowed_networks=["10.0.0.0/8"])
    assert bearer_client(inside).get(MODELS).status_code == 200
    assert bearer_client(outside).get(MODELS).status_code == 401


def test_a_forged_forwarded_for_does_not_satisfy_a_network_binding(bob: User) -> None:
    _, raw = _create(bob, allowed_networks=["10.0.0.0/8"])
    client = bearer_client(raw)
    assert client.get(MODELS, HTTP_X_FORWARDED_FOR="10.1.2.3").status_code == 401


def test_scopes_limit_what_a_key_reaches(bob: User) -> None:
    _, chat_only = _create(bob, scopes=["chat"])
    response = bearer_client(chat_only).get(MODELS)
    assert response.status_code == 403
    assert response.json()["error"]["type"] == "permission_error"


def test_a_key_cannot_manage_keys(bob: User) -> None:
    _, raw = _create(bob)
    client = bearer_client(raw)
    assert client.get(KEYS).status_code == 403
    assert client.post(KEYS, {"name": "more", "scopes": ["chat"]}, format="json").status_code == 403


@pytest.mark.parametrize(
    "credential",
    ["gk_", "gk_short_secret", "gk_abcdefghij_", "gk_ABCDEFGHIJ_secret", "gk_abcdefghij_" + "x" * 200],
)
def test_malformed_or_unknown_keys_are_401(db: None, credential: str) -> None:
    assert bearer_client(credential).get(MODELS).status_code == 401


def test_a_right_prefix_with_a_wrong_secret_is_401(bob: User) -> None:
    _, raw = _create(bob)
    wrong = raw[:-1] + ("a" if raw[-1] != "a" else "b")
    assert bearer_client(wrong).get(MODELS).status_code == 401


def test_a_key_in_the_url_is_ignored(bob: User) -> None:
    _, raw = _create(bob)
    assert APIClient().get(f"{MODELS}?api_key={raw}").status_code == 401


def test_last_used_is_recorded_at_most_once_a_minute(bob: User) -> None:
    key, raw = _create(bob)
    client = bearer_client(raw)
    client.get(MODELS)
    first = ApiKey.objects.get(pk=key.pk).last_used_at
    assert first is not None
    client.get(MODELS)
    assert ApiKey.objects.get(pk=key.pk).last_used_at == first


def test_a_deactivated_owner_makes_their_keys_useless(alice: User, bob: User) -> None:
    from accounts.services import user_deactivate

    _, raw = _create(bob)
    user_deactivate(user=bob, actor=alice)
    assert bearer_client(raw).get(MODELS).status_code == 401


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"scopes": ["chat"]}, "name"),
        ({"name": "x"}, "scopes"),
        ({"name": "x", "scopes": []}, "scopes"),
        ({"name": "x", "scopes": ["admin"]}, "scopes"),
        ({"name": "x", "scopes": ["chat"], "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
        ({"name": "x", "scopes": ["chat"], "expires_at": "soon"}, "expires_at"),
        ({"name": "x", "scopes": ["chat"], "allowed_networks": ["not-a-network"]}, "allowed_networks"),
        ({"name": "x" * 101, "scopes": ["chat"]}, "name"),
    ],
)
def test_bad_key_requests_are_400_and_write_nothing(
    bob: User, payload: dict[str, object], field: str
) -> None:
    response = bearer_client(login(bob).access).post(KEYS, payload, format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json()
    assert not ApiKey.objects.exists()
    assert not AuditEvent.objects.filter(action="apikey.created").exists()


def test_someone_elses_key_is_404_and_stays_valid(bob: User, carol: User) -> None:
    carols_key, carols_raw = _create(carol)
    response = bearer_client(login(bob).access).delete(f"{KEYS}{carols_key.pk}/")
    assert response.status_code == 404
    assert bearer_client(carols_raw).get(MODELS).status_code == 200
    assert bearer_client(login(bob).access).get(KEYS).json() == []


def test_keys_never_reach_the_logs(bob: User, caplog: pytest.LogCaptureFixture) -> None:
    key, raw = _create(bob)
    with caplog.at_level("DEBUG"):
        bearer_client(raw).get(MODELS)
        api_key_revoke(api_key=key, actor=bob)
        bearer_client(raw).get(MODELS)  # refused: logged as 401 by Django
        bearer_client(raw + "x").get(MODELS)
    secret = raw.split("_", 2)[2]
    assert caplog.records, "nothing was logged, so the check proves nothing"
    assert all(secret not in record.getMessage() for record in caplog.records)


def test_a_key_made_under_an_old_pepper_works_and_moves_to_the_new_one(bob: User, settings: Any) -> None:
    settings.API_KEY_PEPPER = "pepper-of-last-year"
    key, raw = _create(bob)
    old_hash = key.secret_hash
    settings.API_KEY_PEPPER = "pepper-of-this-year"
    # Rotated without keeping the old pepper: the key no longer verifies.
    assert bearer_client(raw).get(MODELS).status_code == 401
    settings.API_KEY_PEPPER_FALLBACKS = ["pepper-of-last-year"]
    assert bearer_client(raw).get(MODELS).status_code == 200
    key.refresh_from_db()
    assert key.secret_hash not in (old_hash, "")
    event = AuditEvent.objects.get(action="apikey.rehashed")
    assert event.metadata == {"prefix": key.prefix, "reason": "pepper rotated"}
    # Re-hashed: the old pepper can go, and the key still works.
    settings.API_KEY_PEPPER_FALLBACKS = []
    assert bearer_client(raw).get(MODELS).status_code == 200
    assert AuditEvent.objects.filter(action="apikey.rehashed").count() == 1


def test_sessions_signed_under_an_old_secret_key_survive_its_rotation(bob: User, settings: Any) -> None:
    from django.test import Client

    active, idle = Client(), Client()
    for console in (active, idle):
        console.force_login(bob)
        assert console.get(KEYS).status_code == 200
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-brand-new-secret-key-that-is-long-enough-to-pass-the-checks"
    # During the rotation the old key still verifies, and a session that is used moves on.
    assert active.get(KEYS).status_code == 200
    settings.SECRET_KEY_FALLBACKS = []
    assert active.get(KEYS).status_code == 200
    # One left idle through the whole rotation is signed out once the old key goes.
    assert idle.get(KEYS).status_code in (401, 403)


def test_key_rows_on_the_trail_are_about_the_keys_owner(alice: User, bob: User) -> None:
    # The owner's pseudonym on the row lets their erasure blank the key's name and prefix.
    key, _ = _create(bob, name="bob's laptop")
    api_key_revoke(api_key=key, actor=alice)
    rows = AuditEvent.objects.filter(action__in=["apikey.created", "apikey.revoked"], target_id=str(key.pk))
    assert sorted(rows.values_list("action", flat=True)) == ["apikey.created", "apikey.revoked"]
    assert {str(row.target_pseudonym) for row in rows} == {audit_pseudonym(user=bob)}

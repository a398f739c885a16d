"""POST /api/auth/token/: login, with every attempt audited."""

import jwt
import pytest
from django.conf import settings
from rest_framework.test import APIClient

from accounts.models import User
from audit.models import AuditEvent
from tests.conftest import PASSWORD

URL = "/api/auth/token/"


def test_login_returns_a_pair_with_audience_issuer_and_short_life(api_client: APIClient, bob: User) -> None:
    response = api_client.post(URL, {"username": "bob", "password": PASSWORD}, format="json")
    assert response.status_code == 200
    body = response.json()
    claims = jwt.decode(
        body["access"],
        settings.JWT_SIGNING_KEY,
        algorithms=["HS256"],
        audience="gatehouse-api",
        issuer="gatehouse",
    )
    assert claims["user_id"] == str(bob.pk)
    assert claims["token_type"] == "access"
    assert claims["exp"] - claims["iat"] <= 300
    assert (
        jwt.decode(
            body["refresh"],
            settings.JWT_SIGNING_KEY,
            algorithms=["HS256"],
            audience="gatehouse-api",
            issuer="gatehouse",
        )["token_type"]
        == "refresh"
    )


def test_login_is_audited_with_the_request_id(api_client: APIClient, bob: User) -> None:
    response = api_client.post(URL, {"username": "bob", "password": PASSWORD}, format="json")
    event = AuditEvent.objects.get(action="auth.login.succeeded")
    assert event.actor == bob
    assert event.actor_display == "bob"
    assert event.request_id == response["X-Request-ID"]
    assert event.client_ip == "127.0.0.1"


def test_wrong_password_is_401_and_audited(api_client: APIClient, bob: User) -> None:
    response = api_client.post(URL, {"username": "bob", "password": "not-his-password"}, format="json")
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid username, password or one-time code."}
    assert response["WWW-Authenticate"].startswith("Bearer")
    event = AuditEvent.objects.get(action="auth.login.failed")
    # Logged against the account it claimed, unauthenticated: its erasable pseudonym covers the row.
    assert event.actor_kind == AuditEvent.ActorKind.ANONYMOUS
    assert (event.target_type, event.target_id, event.target_display) == ("accounts.user", str(bob.pk), "bob")
    assert event.actor_pseudonym == event.target_pseudonym is not None
    assert event.outcome == AuditEvent.Outcome.FAILURE
    assert not AuditEvent.objects.filter(action="auth.login.succeeded").exists()


def test_unknown_user_gets_the_same_answer_as_a_wrong_password(api_client: APIClient, bob: User) -> None:
    unknown = api_client.post(URL, {"username": "mallory", "password": "x"}, format="json")
    wrong = api_client.post(URL, {"username": "bob", "password": "x"}, format="json")
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json() == wrong.json()


def test_deactivated_user_cannot_log_in(api_client: APIClient, bob: User) -> None:
    bob.is_active = False
    bob.save()
    response = api_client.post(URL, {"username": "bob", "password": PASSWORD}, format="json")
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"password": PASSWORD}, "username"),
        ({"username": "bob"}, "password"),
        ({"username": "", "password": PASSWORD}, "username"),
        ({"username": "b" * 151, "password": PASSWORD}, "username"),
    ],
)
def test_missing_or_malformed_fields_are_400_with_the_field_named(
    api_client: APIClient, bob: User, payload: dict[str, str], field: str
) -> None:
    response = api_client.post(URL, payload, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert not AuditEvent.objects.filter(action__startswith="auth.login").exists()


def test_malformed_json_is_400(api_client: APIClient, db: None) -> None:
    response = api_client.generic("POST", URL, "{not json", content_type="application/json")
    assert response.status_code == 400


def test_get_is_not_allowed(api_client: APIClient, db: None) -> None:
    assert api_client.get(URL).status_code == 405

"""JWT sessions: rotation, reuse detection, logout, deactivation, rejected token shapes."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import jwt
import pytest
from django.conf import settings
from django.db import connection
from rest_framework.test import APIClient

from accounts.models import RefreshFamily, User
from accounts.services import user_deactivate
from audit.models import AuditEvent
from tests.accounts.helpers import bearer_client, login

REFRESH = "/api/auth/token/refresh/"
LOGOUT = "/api/auth/logout/"
PROTECTED = "/api/keys/"


def _refresh(raw: str) -> int:
    return APIClient().post(REFRESH, {"refresh": raw}, format="json").status_code


def test_refresh_rotates_and_the_old_token_is_dead(bob: User) -> None:
    pair = login(bob)
    response = APIClient().post(REFRESH, {"refresh": pair.refresh}, format="json")
    assert response.status_code == 200
    rotated = response.json()
    assert bearer_client(rotated["access"]).get(PROTECTED).status_code == 200
    assert _refresh(pair.refresh) == 401


def test_reusing_a_spent_refresh_token_ends_the_whole_family(bob: User) -> None:
    pair = login(bob)
    rotated = APIClient().post(REFRESH, {"refresh": pair.refresh}, format="json").json()
    reuse = APIClient().post(REFRESH, {"refresh": pair.refresh}, format="json")
    assert reuse.status_code == 401
    assert "already used" in reuse.json()["detail"]
    # The thief's replay also killed the legitimate holder's newer tokens.
    assert _refresh(rotated["refresh"]) == 401
    assert bearer_client(rotated["access"]).get(PROTECTED).status_code == 401
    family = RefreshFamily.objects.get(user=bob)
    assert family.revoked_reason == "reuse"
    event = AuditEvent.objects.get(action="auth.refresh.reused")
    assert event.actor == bob
    assert event.outcome == AuditEvent.Outcome.DENIED


@pytest.mark.django_db(transaction=True)
def test_twenty_parallel_refreshes_of_one_token_give_exactly_one_success(bob: User) -> None:
    pair = login(bob)
    racers = 20
    barrier = threading.Barrier(racers)

    def race() -> int:
        try:
            barrier.wait(timeout=30)
            return _refresh(pair.refresh)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=racers) as pool:
        statuses = list(pool.map(lambda _: race(), range(racers)))
    assert sorted(statuses) == [200] + [401] * (racers - 1), statuses
    # The first loser presented a spent token: reuse, which ended the family; the rest were
    # refused against an ended session.
    assert RefreshFamily.objects.get(user=bob).revoked_reason == "reuse"
    assert AuditEvent.objects.filter(action="auth.refresh.reused").count() == 1


def test_logout_ends_that_session_only(bob: User) -> None:
    first, second = login(bob), login(bob)
    response = bearer_client(first.access).post(LOGOUT, {"refresh": first.refresh}, format="json")
    assert response.status_code == 200
    assert response.json() == {"sessions_ended": 1}
    assert bearer_client(first.access).get(PROTECTED).status_code == 401
    assert _refresh(first.refresh) == 401
    assert bearer_client(second.access).get(PROTECTED).status_code == 200
    assert AuditEvent.objects.filter(action="auth.logout", actor=bob).count() == 1


def test_logout_without_a_refresh_token_ends_the_calling_session(bob: User) -> None:
    pair = login(bob)
    assert bearer_client(pair.access).post(LOGOUT, {}, format="json").json() == {"sessions_ended": 1}
    assert _refresh(pair.refresh) == 401


def test_logout_all_cuts_off_every_outstanding_token(bob: User) -> None:
    sessions = [login(bob) for _ in range(3)]
    response = bearer_client(sessions[0].access).post(LOGOUT, {"all": True}, format="json")
    assert response.json() == {"sessions_ended": 3}
    for pair in sessions:
        assert bearer_client(pair.access).get(PROTECTED).status_code == 401
        assert _refresh(pair.refresh) == 401
    # A fresh login still works, even within the same second.
    assert bearer_client(login(bob).access).get(PROTECTED).status_code == 200
    assert AuditEvent.objects.filter(action="auth.logout.all").count() == 1


def test_logout_with_someone_elses_refresh_token_is_refused(bob: User, carol: User) -> None:
    bobs, carols = login(bob), login(carol)
    response = bearer_client(bobs.access).post(LOGOUT, {"refresh": carols.refresh}, format="json")
    assert response.status_code == 400
    assert _refresh(carols.refresh) == 200


def test_deactivating_a_user_cuts_off_their_tokens_on_the_next_request(alice: User, bob: User) -> None:
    pair = login(bob)
    client = bearer_client(pair.access)
    assert client.get(PROTECTED).status_code == 200
    user_deactivate(user=bob, actor=alice)
    assert client.get(PROTECTED).status_code == 401
    assert _refresh(pair.refresh) == 401
    event = AuditEvent.objects.get(action="user.deactivated")
    assert event.actor == alice
    assert event.metadata["after"] == {"is_active": False}


def _forge(claims: dict[str, object], *, key: str | None = None, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key or settings.JWT_SIGNING_KEY, algorithm=algorithm)


def _claims_of(token: str) -> dict[str, object]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda c: {**c, "aud": "someone-else"}, id="wrong-audience"),
        pytest.param(lambda c: {**c, "iss": "not-gatehouse"}, id="wrong-issuer"),
        pytest.param(lambda c: {**c, "exp": int(time.time()) - 1}, id="expired"),
        pytest.param(lambda c: {**c, "token_type": "refresh"}, id="refresh-type"),
        pytest.param(lambda c: {k: v for k, v in c.items() if k != "fam"}, id="no-session"),
    ],
)
def test_tampered_access_tokens_are_401(bob: User, mutate: object) -> None:
    claims = _claims_of(login(bob).access)
    forged = _forge(mutate(claims))  # type: ignore[operator]
    response = bearer_client(forged).get(PROTECTED)
    assert response.status_code == 401


def test_a_refresh_token_sent_as_an_access_token_is_401(bob: User) -> None:
    assert bearer_client(login(bob).refresh).get(PROTECTED).status_code == 401


def test_alg_none_is_401(bob: User) -> None:
    claims = _claims_of(login(bob).access)
    unsigned = jwt.encode(claims, key=None, algorithm="none")
    assert bearer_client(unsigned).get(PROTECTED).status_code == 401


def test_a_token_signed_with_the_session_secret_is_401(bob: User) -> None:
    claims = _claims_of(login(bob).access)
    assert bearer_client(_forge(claims, key=settings.SECRET_KEY)).get(PROTECTED).status_code == 401


def test_access_tokens_live_five_minutes_at_most(bob: User) -> None:
    claims = _claims_of(login(bob).access)
    assert int(claims["exp"]) - int(claims["iat"]) <= timedelta(minutes=5).total_seconds()  # type: ignore[call-overload]


@pytest.mark.parametrize("header", ["Bearer", "Bearer    ", "Basic Ym9iOnNlY3JldA==", "Token abc"])
def test_unusable_authorization_headers_are_not_a_login(db: None, header: str) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    assert client.get(PROTECTED).status_code == 401


def test_refresh_with_garbage_is_401_and_missing_field_400(db: None) -> None:
    assert _refresh("garbage") == 401
    assert APIClient().post(REFRESH, {}, format="json").status_code == 400

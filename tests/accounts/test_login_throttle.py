"""Failed logins lock an account (and an address) for a while; all of it audited."""

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from accounts import login_throttle
from accounts.models import User
from audit.models import AuditEvent
from tests.conftest import PASSWORD

URL = "/api/auth/token/"


def _attempt(username: str, password: str, ip: str = "127.0.0.1") -> int:
    return (
        APIClient(REMOTE_ADDR=ip)
        .post(URL, {"username": username, "password": password}, format="json")
        .status_code
    )


@override_settings(GATEHOUSE_LOGIN_MAX_FAILURES_PER_ACCOUNT=3)
def test_an_account_locks_after_repeated_failures_even_for_the_right_password(bob: User) -> None:
    assert [_attempt("bob", "wrong") for _ in range(3)] == [401, 401, 401]
    response = APIClient().post(URL, {"username": "bob", "password": PASSWORD}, format="json")
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert AuditEvent.objects.filter(action="auth.login.locked", target_id=str(bob.pk)).count() == 1
    assert AuditEvent.objects.filter(action="auth.login.blocked").count() == 1
    assert not AuditEvent.objects.filter(action="auth.login.succeeded").exists()


@override_settings(GATEHOUSE_LOGIN_MAX_FAILURES_PER_ACCOUNT=3, GATEHOUSE_LOGIN_LOCKOUT_SECONDS=60)
def test_the_lockout_expires(bob: User, monkeypatch: pytest.MonkeyPatch) -> None:
    for _ in range(3):
        _attempt("bob", "wrong")
    assert _attempt("bob", PASSWORD) == 429
    real_time = login_throttle.time.time
    monkeypatch.setattr(login_throttle.time, "time", lambda: real_time() + 61)
    assert _attempt("bob", PASSWORD) == 200


@override_settings(GATEHOUSE_LOGIN_MAX_FAILURES_PER_ACCOUNT=3)
def test_a_success_resets_the_account_counter(bob: User) -> None:
    _attempt("bob", "wrong")
    _attempt("bob", "wrong")
    assert _attempt("bob", PASSWORD) == 200
    assert [_attempt("bob", "wrong") for _ in range(2)] == [401, 401]
    assert _attempt("bob", PASSWORD) == 200


@override_settings(GATEHOUSE_LOGIN_MAX_FAILURES_PER_IP=4, GATEHOUSE_LOGIN_MAX_FAILURES_PER_ACCOUNT=100)
def test_one_address_spraying_many_accounts_is_locked_out(bob: User) -> None:
    for name in ("u1", "u2", "u3", "u4"):
        assert _attempt(name, "guess", ip="203.0.113.9") == 401
    assert _attempt("bob", PASSWORD, ip="203.0.113.9") == 429
    # Another address is unaffected.
    assert _attempt("bob", PASSWORD, ip="198.51.100.7") == 200

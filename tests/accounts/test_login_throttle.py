"""Failed logins lock an account (and an address) for a while; all of it audited."""

import importlib
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client, override_settings
from rest_framework.test import APIClient

from accounts import login_throttle
from accounts.models import User
from accounts.services import login as login_service
from accounts.services import two_factor_enroll
from accounts.services.login import LOGIN_INVALID_MESSAGE, LOGIN_LOCKED_MESSAGE, login_authenticate
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


# --- Guesses in flight -----------------------------------------------------------------------
# A guess that is still being checked (the password hash is slow on purpose) already counts:
# the tests below send more guesses from inside the check of the first, as parallel requests
# would arrive while it runs.


def _while_checking(
    target: str, monkeypatch: pytest.MonkeyPatch, more_guesses: Callable[[], list[Any]]
) -> list[Any]:
    """Patch `target` (a check inside the login policy) so that its first call lets `more_guesses` in first."""
    module, _, name = target.rpartition(".")
    real = getattr(importlib.import_module(module), name)
    inner: list[Any] = []

    def check(**arguments: Any) -> Any:
        if not inner:
            inner.append(None)  # only the outermost guess waits for the others
            inner.extend(more_guesses())
        return real(**arguments)

    monkeypatch.setattr(target, check)
    return inner


def test_guesses_in_flight_count_before_the_password_is_checked(
    bob: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    inner = _while_checking(
        "accounts.services.login.authenticate",
        monkeypatch,
        lambda: [_attempt("bob", "wrong") for _ in range(5)],
    )
    outer = _attempt("bob", "wrong")
    answers = [*inner[1:], outer]
    # Five guesses per account and address, however many were in flight at once.
    assert answers.count(401) == 5
    assert answers.count(429) == 1
    assert _attempt("bob", PASSWORD) == 429


def test_logins_in_flight_past_the_limit_wait_a_moment_not_a_lockout(
    bob: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = login_service.authenticate
    answers: list[Any] = []

    def login() -> Any:
        return APIClient().post(URL, {"username": "bob", "password": PASSWORD}, format="json")

    def check_while_another_arrives(**credentials: Any) -> Any:
        # Each login's check lets the next one in, so that all six are in flight at once.
        answers.append(login())
        return real(**credentials)

    monkeypatch.setattr("accounts.services.login.authenticate", check_while_another_arrives)
    assert login().status_code == 200
    # The innermost (the sixth) was refused without a check; the five in flight logged in.
    refused = answers[0]
    assert [answer.status_code for answer in answers] == [429] + [200] * 4
    assert int(refused["Retry-After"]) == login_throttle.IN_FLIGHT_RETRY_SECONDS
    monkeypatch.undo()
    # Those in flight were right: nothing is locked.
    assert login().status_code == 200
    assert not AuditEvent.objects.filter(action="auth.login.locked").exists()


def test_one_time_codes_in_flight_count_before_the_code_is_checked(
    bob: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    two_factor_enroll(user=bob, actor=None)

    def guess(code: str) -> int:
        return (
            APIClient()
            .post(URL, {"username": "bob", "password": PASSWORD, "otp": code}, format="json")
            .status_code
        )

    inner = _while_checking(
        "accounts.services.login.two_factor_verify",
        monkeypatch,
        lambda: [guess(f"{n:06d}") for n in range(1, 6)],
    )
    outer = guess("999999")
    answers = [*inner[1:], outer]
    assert answers.count(401) == 5
    assert answers.count(429) == 1
    reasons = [e.metadata["reason"] for e in AuditEvent.objects.filter(action="auth.login.failed")]
    assert reasons == ["otp_invalid"] * 5


def test_the_console_and_the_api_share_the_guesses_in_flight(
    alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    def console_guess() -> list[str]:
        response = Client().post("/admin/login/?next=/admin/", {"username": "alice", "password": "wrong"})
        return [str(error) for error in response.context["form"].non_field_errors()]

    inner = _while_checking(
        "accounts.services.login.authenticate", monkeypatch, lambda: [console_guess() for _ in range(5)]
    )
    assert _attempt("alice", "wrong") == 401
    assert inner[1:] == [[LOGIN_INVALID_MESSAGE]] * 4 + [[LOGIN_LOCKED_MESSAGE]]


def test_a_login_that_ends_in_an_error_gives_its_slot_back(
    bob: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(**credentials: object) -> None:
        raise RuntimeError("the user table is gone")

    monkeypatch.setattr("accounts.services.login.authenticate", broken)
    for _ in range(6):
        with pytest.raises(RuntimeError):
            login_authenticate(
                username="bob", password=PASSWORD, otp=None, client_ip="127.0.0.1", channel="api"
            )
    monkeypatch.undo()
    assert _attempt("bob", PASSWORD) == 200


# --- Who is locked out -----------------------------------------------------------------------


def test_failures_lock_the_account_at_that_address_only(bob: User) -> None:
    assert [_attempt("bob", "wrong", ip="203.0.113.9") for _ in range(5)] == [401] * 5
    assert _attempt("bob", PASSWORD, ip="203.0.113.9") == 429
    # The real user, elsewhere, is not locked out by someone else's guesses.
    assert _attempt("bob", PASSWORD, ip="198.51.100.7") == 200
    # Nor is another account at the guessing address (5 of its 20).
    assert _attempt("alice-not-here", "wrong", ip="203.0.113.9") == 401
    locked = AuditEvent.objects.get(action="auth.login.locked")
    assert locked.metadata["lockout"] == "account-address"


@override_settings(GATEHOUSE_LOGIN_MAX_FAILURES_PER_ACCOUNT_GLOBAL=8)
def test_an_account_guessed_at_from_many_addresses_locks_everywhere(bob: User) -> None:
    addresses = [f"203.0.113.{n}" for n in range(1, 5)]
    assert [_attempt("bob", "wrong", ip=ip) for ip in addresses for _ in range(2)] == [401] * 8
    assert _attempt("bob", PASSWORD, ip="198.51.100.7") == 429
    assert AuditEvent.objects.get(action="auth.login.locked").metadata["lockout"] == "account"


@override_settings(GATEHOUSE_LOGIN_LOCKOUT_SECONDS=60)
def test_a_lockout_is_audited_once_however_often_it_refuses(
    bob: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(5):
        _attempt("bob", "wrong")
    before = _blocked_metric("account-address")
    assert [_attempt("bob", PASSWORD) for _ in range(30)] == [429] * 30
    assert AuditEvent.objects.filter(action="auth.login.blocked").count() == 1
    # Every refusal is still counted, in a metric that does not grow the trail.
    assert _blocked_metric("account-address") - before == 30
    # The next lockout, after this one ended, is recorded again.
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 61)
    for _ in range(5):
        _attempt("bob", "wrong")
    assert [_attempt("bob", PASSWORD) for _ in range(3)] == [429] * 3
    assert AuditEvent.objects.filter(action="auth.login.blocked").count() == 2


def test_the_lockout_rows_say_how_the_login_came(bob: User) -> None:
    """The same rows as a lockout through single sign-on's code check, which says `oidc`."""
    for _ in range(5):
        _attempt("bob", "wrong")
    assert _attempt("bob", PASSWORD) == 429
    locked = AuditEvent.objects.get(action="auth.login.locked").metadata
    blocked = AuditEvent.objects.get(action="auth.login.blocked").metadata
    assert locked.pop("seconds") > 0
    assert blocked.pop("retry_after") > 0
    assert locked == blocked == {"method": "password", "channel": "api", "lockout": "account-address"}


def _blocked_metric(scope: str) -> float:
    from gatehouse.metrics import LOGINS_BLOCKED

    return float(LOGINS_BLOCKED.labels(scope=scope)._value.get())

"""The console login keeps the API's policy: the same lockout, and one answer for every refusal."""

import pytest
from django.test import Client, override_settings
from rest_framework.test import APIClient

from accounts.models import User
from accounts.services import two_factor_enroll
from audit.models import AuditEvent
from tests.conftest import PASSWORD

LOGIN = "/admin/login/?next=/admin/"
REFUSED = "Invalid username, password or one-time code."
LOCKED = "Too many failed logins; try again later."


def _console_errors(client: Client, username: str, password: str, otp: str = "") -> list[str]:
    data = {"username": username, "password": password}
    if otp:
        data["otp_token"] = otp
    response = client.post(LOGIN, data)
    assert response.status_code == 200, "the login form again, with an error"
    return [str(error) for error in response.context["form"].non_field_errors()]


def test_five_wrong_passwords_lock_the_console_login_even_for_the_right_one(alice: User) -> None:
    client = Client()
    for _ in range(5):
        assert _console_errors(client, "alice", "wrong") == [REFUSED]
    assert _console_errors(client, "alice", PASSWORD) == [LOCKED]
    assert client.get("/admin/").status_code == 302
    assert AuditEvent.objects.filter(action="auth.login.failed").count() == 5
    assert AuditEvent.objects.filter(action="auth.login.locked").count() == 1
    blocked = AuditEvent.objects.get(action="auth.login.blocked")
    assert blocked.metadata["channel"] == "console"
    assert not AuditEvent.objects.filter(action="auth.login.succeeded").exists()


def test_a_locked_console_login_does_not_check_the_password(
    alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(5):
        _console_errors(Client(), "alice", "wrong")

    def no_password_check(**credentials: object) -> None:
        raise AssertionError("the password was checked during a lockout")

    monkeypatch.setattr("accounts.services.login.authenticate", no_password_check)
    assert _console_errors(Client(), "alice", PASSWORD) == [LOCKED]


def test_the_right_password_without_a_code_looks_like_a_wrong_password(alice: User) -> None:
    two_factor_enroll(user=alice, actor=None)
    client = Client()
    right = client.post(LOGIN, {"username": "alice", "password": PASSWORD})
    wrong = client.post(LOGIN, {"username": "alice", "password": "wrong"})
    assert [str(e) for e in right.context["form"].non_field_errors()] == [REFUSED]
    assert [str(e) for e in wrong.context["form"].non_field_errors()] == [REFUSED]
    # Nor does the page change: no device list appears once the password was right.
    assert 'name="otp_device"' not in right.content.decode()
    reasons = sorted(e.metadata["reason"] for e in AuditEvent.objects.filter(action="auth.login.failed"))
    assert reasons == ["otp_missing", "password"]


def test_a_staff_password_and_a_member_password_get_the_same_answer(bob: User, olga: User) -> None:
    # bob is no staff member: his right password opens nothing here, and says nothing either.
    assert (
        _console_errors(Client(), "bob", PASSWORD) == _console_errors(Client(), "olga", "wrong") == [REFUSED]
    )


@override_settings(GATEHOUSE_LOGIN_MAX_FAILURES_PER_ACCOUNT=3)
def test_a_lockout_earned_on_the_api_also_closes_the_console(alice: User) -> None:
    for _ in range(3):
        response = APIClient().post("/api/auth/token/", {"username": "alice", "password": "x"}, format="json")
        assert response.status_code == 401
    assert _console_errors(Client(), "alice", PASSWORD) == [LOCKED]


@override_settings(GATEHOUSE_LOGIN_MAX_FAILURES_PER_ACCOUNT=3)
def test_console_failures_also_lock_the_api(alice: User) -> None:
    for _ in range(3):
        _console_errors(Client(), "alice", "wrong")
    response = APIClient().post(
        "/api/auth/token/", {"username": "alice", "password": PASSWORD}, format="json"
    )
    assert response.status_code == 429


def test_each_failed_console_attempt_is_audited_once(alice: User) -> None:
    _console_errors(Client(), "alice", "wrong")
    event = AuditEvent.objects.get(action="auth.login.failed")
    assert event.metadata == {"method": "password", "channel": "console", "reason": "password"}

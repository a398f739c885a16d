"""POST /api/auth/token/ asks for the second factor the console asks for, with one answer for every refusal."""

from typing import Any

from django.test import override_settings
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.test import APIClient

from accounts.models import User
from accounts.services import two_factor_enroll
from audit.models import AuditEvent
from tests.conftest import PASSWORD

URL = "/api/auth/token/"
REFUSED = {"detail": "Invalid username, password or one-time code."}


def _code(user: User) -> str:
    device = TOTPDevice.objects.get(user=user)
    return f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits, drift=device.drift):06d}"


def _wrong_code(user: User) -> str:
    return f"{(int(_code(user)) + 1) % 1_000_000:06d}"


def _post(username: str, password: str, otp: str | None = None) -> Any:
    data = {"username": username, "password": password}
    if otp is not None:
        data["otp"] = otp
    return APIClient().post(URL, data, format="json")


def test_an_enrolled_member_without_a_code_gets_no_token(bob: User) -> None:
    two_factor_enroll(user=bob, actor=None)
    response = _post("bob", PASSWORD)
    assert response.status_code == 401
    assert response.json() == REFUSED
    assert "access" not in response.json()
    event = AuditEvent.objects.get(action="auth.login.failed")
    assert event.metadata["reason"] == "otp_missing"
    assert event.metadata["channel"] == "api"
    assert not AuditEvent.objects.filter(action="auth.login.succeeded").exists()


def test_a_wrong_code_gets_the_same_answer_as_a_wrong_password(bob: User) -> None:
    two_factor_enroll(user=bob, actor=None)
    wrong_code = _post("bob", PASSWORD, otp=_wrong_code(bob))
    wrong_password = _post("bob", "not-his-password", otp=_code(bob))
    assert wrong_code.status_code == wrong_password.status_code == 401
    assert wrong_code.json() == wrong_password.json() == REFUSED
    reasons = sorted(e.metadata["reason"] for e in AuditEvent.objects.filter(action="auth.login.failed"))
    assert reasons == ["otp_invalid", "password"]


def test_the_right_code_logs_in_once(bob: User) -> None:
    two_factor_enroll(user=bob, actor=None)
    code = _code(bob)
    first = _post("bob", PASSWORD, otp=code)
    assert first.status_code == 200
    assert set(first.json()) == {"access", "refresh"}
    assert AuditEvent.objects.get(action="auth.login.succeeded").metadata["second_factor"] is True
    # A code is single-use: replaying it (as someone who saw it could) is refused.
    replayed = _post("bob", PASSWORD, otp=code)
    assert replayed.status_code == 401
    assert replayed.json() == REFUSED


@override_settings(GATEHOUSE_ADMIN_2FA_REQUIRED=True)
def test_an_admin_without_an_authenticator_gets_no_token_when_2fa_is_required(alice: User) -> None:
    response = _post("alice", PASSWORD)
    assert response.status_code == 403
    body = response.json()
    assert body["code"] == "otp_enrolment_required"
    assert "/api/auth/2fa/totp/" in body["detail"]
    assert body["enrolment_token"].startswith("enrol_")
    assert "access" not in body
    assert "refresh" not in body
    assert not AuditEvent.objects.filter(action="auth.login.succeeded").exists()
    assert AuditEvent.objects.get(action="auth.login.failed").metadata["reason"] == "otp_enrolment_required"


@override_settings(GATEHOUSE_ADMIN_2FA_REQUIRED=True)
def test_an_enrolled_admin_needs_the_code_on_the_api_too(alice: User) -> None:
    two_factor_enroll(user=alice, actor=None)
    assert _post("alice", PASSWORD).status_code == 401
    assert _post("alice", PASSWORD, otp=_code(alice)).status_code == 200


@override_settings(GATEHOUSE_ADMIN_2FA_REQUIRED=True)
def test_an_enrolment_refusal_needs_the_right_password_first(alice: User) -> None:
    response = _post("alice", "not-her-password")
    assert response.status_code == 401
    assert response.json() == REFUSED


@override_settings(GATEHOUSE_LOGIN_MAX_FAILURES_PER_ACCOUNT=3)
def test_wrong_codes_count_toward_the_lockout(bob: User) -> None:
    two_factor_enroll(user=bob, actor=None)
    assert [_post("bob", PASSWORD, otp=_wrong_code(bob)).status_code for _ in range(3)] == [401, 401, 401]
    response = _post("bob", PASSWORD, otp=_code(bob))
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert AuditEvent.objects.filter(action="auth.login.locked").count() == 1


def test_without_an_authenticator_the_code_is_not_asked(bob: User) -> None:
    assert _post("bob", PASSWORD).status_code == 200


def test_a_malformed_code_is_400_with_the_field_named(bob: User) -> None:
    response = _post("bob", PASSWORD, otp="12ab56")
    assert response.status_code == 400
    assert "otp" in response.json()
    assert not AuditEvent.objects.filter(action__startswith="auth.login").exists()

"""TOTP for the console: required of admins when enabled, asked of anyone enrolled."""

from django.test import Client, override_settings
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import User
from accounts.services import two_factor_enroll
from audit.models import AuditEvent
from tests.conftest import PASSWORD

LOGIN = "/admin/login/?next=/admin/"


def _code(user: User) -> str:
    device = TOTPDevice.objects.get(user=user)
    return f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits, drift=device.drift):06d}"


def _log_in(client: Client, user: User, token: str = "") -> int:
    data = {"username": user.get_username(), "password": PASSWORD}
    if token:
        data["otp_token"] = token
    return client.post(LOGIN, data).status_code


@override_settings(GATEHOUSE_ADMIN_2FA_REQUIRED=True)
def test_an_enrolled_admin_needs_the_code(alice: User) -> None:
    url = two_factor_enroll(user=alice, actor=None)
    assert url.startswith("otpauth://totp/")
    client = Client()
    assert _log_in(client, alice) == 200  # the form again, with an error
    assert client.get("/admin/").status_code == 302
    assert _log_in(client, alice, token=_code(alice)) == 302
    assert client.get("/admin/").status_code == 200


@override_settings(GATEHOUSE_ADMIN_2FA_REQUIRED=True)
def test_a_wrong_code_is_refused(alice: User) -> None:
    two_factor_enroll(user=alice, actor=None)
    client = Client()
    wrong = f"{(int(_code(alice)) + 1) % 1_000_000:06d}"
    assert _log_in(client, alice, token=wrong) == 200
    assert client.get("/admin/").status_code == 302


@override_settings(GATEHOUSE_ADMIN_2FA_REQUIRED=True)
def test_an_unenrolled_admin_is_sent_to_enrol(alice: User) -> None:
    client = Client()
    response = client.post(LOGIN, {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == "/admin/account/2fa/"
    assert "A second factor is required" in client.get("/admin/account/2fa/").content.decode()


@override_settings(GATEHOUSE_ADMIN_2FA_REQUIRED=True)
def test_a_session_without_the_second_factor_is_not_enough_for_an_admin(alice: User) -> None:
    client = Client()
    client.force_login(alice)  # a session that never proved a second factor
    assert client.get("/admin/").status_code == 302


@override_settings(GATEHOUSE_ADMIN_2FA_REQUIRED=False)
def test_without_the_requirement_admins_log_in_with_a_password(alice: User) -> None:
    client = Client()
    assert _log_in(client, alice) == 302
    assert client.get("/admin/").status_code == 200


def test_console_logins_are_audited(alice: User) -> None:
    client = Client()
    client.post(LOGIN, {"username": "alice", "password": "wrong"})
    _log_in(client, alice)
    failed = AuditEvent.objects.get(action="auth.login.failed")
    assert failed.metadata["channel"] == "console"
    succeeded = AuditEvent.objects.get(action="auth.login.succeeded")
    assert succeeded.metadata["channel"] == "console"
    assert succeeded.actor == alice


def test_enrolment_is_audited(alice: User) -> None:
    two_factor_enroll(user=alice, actor=alice)
    assert AuditEvent.objects.get(action="auth.2fa.enrolled").actor == alice


def test_the_console_login_page_asks_for_a_code(db: None) -> None:
    page = Client().get(LOGIN).content.decode()
    assert 'name="otp_token"' in page
    assert 'name="password"' in page

"""The console's "Your second factor" page, and the enrolment-only state before a required one."""

from typing import Any

import pytest
from django.test import Client, override_settings
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import RecoveryCodeDevice, User
from accounts.services import two_factor_enroll
from audit.models import AuditEvent
from tests.accounts.helpers import AuthenticatorClock
from tests.conftest import PASSWORD

PAGE = "/admin/account/2fa/"
LOGIN = "/admin/login/?next=/admin/"


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> AuthenticatorClock:
    return AuthenticatorClock(monkeypatch)


def _enrol_through_the_page(client: Client, user: User, clock: AuthenticatorClock) -> list[str]:
    started = client.post(PAGE, {"action": "start"})
    assert started.status_code == 200
    enrolment = started.context["enrolment"]
    page = started.content.decode()
    assert enrolment.secret in page
    assert "otpauth://totp/" in page
    confirmed = client.post(PAGE, {"action": "confirm", "code": clock.code(user, confirmed=False)})
    assert confirmed.status_code == 200
    codes: list[str] = confirmed.context["recovery_codes"]
    assert all(code in confirmed.content.decode() for code in codes)
    return codes


def test_a_console_user_enrols_and_confirms_on_the_page(olga: User, clock: AuthenticatorClock) -> None:
    client = Client()
    client.force_login(olga)
    assert f'href="{PAGE}"' in client.get("/admin/").content.decode()  # beside "Change password"
    page = client.get(PAGE)
    assert page.status_code == 200
    assert 'id="start-form"' in page.content.decode()
    codes = _enrol_through_the_page(client, olga, clock)
    assert len(codes) == 10
    assert TOTPDevice.objects.get(user=olga).confirmed
    # The secret is shown once: the page does not show it again.
    again = client.get(PAGE)
    assert "otpauth://" not in again.content.decode()
    assert again.context["status"].recovery_codes_remaining == 10
    assert 'id="remove-form"' in again.content.decode()
    # Confirming on the page proved a second factor in this session.
    assert client.get("/admin/").status_code == 200


def test_the_page_regenerates_and_removes_with_a_code(olga: User, clock: AuthenticatorClock) -> None:
    client = Client()
    client.force_login(olga)
    codes = _enrol_through_the_page(client, olga, clock)
    wrong = client.post(PAGE, {"action": "regenerate", "otp": "abcde-fghjk"})
    assert "neither a current code" in wrong.content.decode()
    assert RecoveryCodeDevice.objects.get(user=olga).remaining == 10
    regenerated = client.post(PAGE, {"action": "regenerate", "otp": codes[0]})
    fresh = regenerated.context["recovery_codes"]
    assert not set(fresh) & set(codes)
    removed = client.post(PAGE, {"action": "remove", "otp": clock.code(olga)})
    assert removed.context["removed"] is True
    assert not TOTPDevice.objects.filter(user=olga).exists()
    assert AuditEvent.objects.get(action="auth.2fa.removed").metadata["channel"] == "console"


def test_the_page_posts_only_with_a_csrf_token(olga: User) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(olga)
    assert client.post(PAGE, {"action": "start"}).status_code == 403
    assert not TOTPDevice.objects.filter(user=olga).exists()
    assert 'name="csrfmiddlewaretoken"' in client.get(PAGE).content.decode()


def test_an_unknown_action_is_refused(olga: User) -> None:
    client = Client()
    client.force_login(olga)
    assert client.post(PAGE, {"action": "reset"}).status_code == 400


def test_nobody_signed_in_is_sent_to_the_login(db: None) -> None:
    response = Client().get(PAGE)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_a_console_login_with_a_recovery_code_says_so(olga: User, clock: AuthenticatorClock) -> None:
    client = Client()
    client.force_login(olga)
    codes = _enrol_through_the_page(client, olga, clock)
    fresh = Client()
    response = fresh.post(LOGIN, {"username": "olga", "password": PASSWORD, "otp_token": codes[3]})
    assert response.status_code == 302
    row = AuditEvent.objects.filter(action="auth.login.succeeded").order_by("-id").first()
    assert row is not None
    assert row.metadata["channel"] == "console"
    assert row.metadata["second_factor_method"] == "recovery_code"
    used = AuditEvent.objects.get(action="auth.2fa.recovery_code.used")
    assert used.metadata["channel"] == "console"


@override_settings(GATEHOUSE_ADMIN_2FA_REQUIRED=True)
def test_a_required_admin_without_one_reaches_only_the_enrolment_page_until_confirmed(
    alice: User, clock: AuthenticatorClock
) -> None:
    client = Client()
    client.get(LOGIN)
    before = client.session.session_key
    response = client.post(LOGIN, {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == PAGE
    # Held under a new session key, and not a login.
    assert client.session.session_key != before
    assert "_auth_user_id" not in client.session
    for other in (
        "/admin/",
        "/admin/accounts/user/",
        "/admin/dashboard/",
        "/admin/playground/",
        "/api/keys/",
    ):
        assert client.get(other).status_code in (302, 401, 403), other
    page = client.get(PAGE)
    assert page.status_code == 200
    assert page.context["pending_login"] is True
    assert 'id="remove-form"' not in page.content.decode()
    assert client.post(PAGE, {"action": "remove", "otp": "123456"}).status_code == 400
    assert client.post(PAGE, {"action": "regenerate", "otp": "123456"}).status_code == 400

    codes = _enrol_through_the_page(client, alice, clock)
    assert len(codes) == 10
    assert client.get("/admin/").status_code == 200
    row = AuditEvent.objects.get(action="auth.login.succeeded")
    assert row.metadata["channel"] == "console"
    assert row.metadata["enrolment"] is True
    assert row.metadata["second_factor"] is True
    # The enrolment is spent: a new browser logs in with the password and a code.
    other: Any = Client()
    assert other.get(PAGE).status_code == 302
    assert other.post(LOGIN, {"username": "alice", "password": PASSWORD}).status_code == 200
    assert (
        other.post(
            LOGIN, {"username": "alice", "password": PASSWORD, "otp_token": clock.code(alice)}
        ).status_code
        == 302
    )


@override_settings(GATEHOUSE_ADMIN_2FA_REQUIRED=True)
def test_a_wrong_password_never_reaches_the_enrolment_page(alice: User) -> None:
    client = Client()
    response = client.post(LOGIN, {"username": "alice", "password": "wrong"})
    assert response.status_code == 200
    assert client.get(PAGE).status_code == 302


@override_settings(GATEHOUSE_ADMIN_2FA_REQUIRED=True)
def test_an_enrolled_admin_is_not_sent_to_enrol(alice: User) -> None:
    two_factor_enroll(user=alice, actor=None)
    response = Client().post(LOGIN, {"username": "alice", "password": PASSWORD})
    assert response.status_code == 200  # the form again: the code is missing

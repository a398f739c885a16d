"""The login policy's second factor applies to single sign-on; a trusted provider's own counts."""

from typing import Any

import pytest
from django.test import Client
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.test import APIClient

from accounts.models import User
from accounts.roles import Role
from audit.models import AuditEvent
from sso.models import GroupMapping
from sso.services import group_mapping_save
from tests.accounts.helpers import AuthenticatorClock
from tests.sso.conftest import corp_with
from tests.sso.oidc_provider import OidcProviderProcess
from tests.sso.test_console_sign_in import sign_in

pytestmark = pytest.mark.django_db
EXCHANGE = "/api/auth/oidc/token/"


def code_of(device: TOTPDevice) -> str:
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    return f"{totp.token():0{device.digits}d}"


@pytest.fixture
def admins_mapped(settings: Any, corp: OidcProviderProcess, alice: User) -> None:
    settings.GATEHOUSE_ADMIN_2FA_REQUIRED = True
    group_mapping_save(mapping=GroupMapping(provider="corp", group="gh-admins", role=Role.ADMIN), actor=alice)


def test_an_admin_without_a_second_factor_is_sent_to_enrol_first(
    client: Client, corp: OidcProviderProcess, admins_mapped: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = AuthenticatorClock(monkeypatch)
    corp.person("erin", groups=["gh-admins"])
    answer = sign_in(client, corp, "erin")
    assert answer.status_code == 302
    assert answer["Location"] == "/admin/account/2fa/"
    assert "_auth_user_id" not in client.session  # signed in nowhere yet
    assert client.get("/admin/").status_code == 302
    erin = User.objects.get(username="erin")
    assert AuditEvent.objects.get(action="auth.sso.failed").metadata["reason"] == "otp_enrolment_required"
    assert client.post("/admin/account/2fa/", {"action": "start"}).status_code == 200
    confirmed = client.post(
        "/admin/account/2fa/", {"action": "confirm", "code": clock.code(erin, confirmed=False)}
    )
    assert confirmed.status_code == 200
    assert client.session["_auth_user_id"] == str(erin.pk)
    assert client.get("/admin/").status_code == 200
    login = AuditEvent.objects.get(action="auth.login.succeeded")
    assert login.metadata["method"] == "oidc"
    assert login.metadata["provider"] == "corp"
    assert login.metadata["enrolment"] is True


def test_a_trusted_amr_satisfies_the_requirement(
    client: Client, settings: Any, corp: OidcProviderProcess, admins_mapped: None
) -> None:
    corp_with(settings, corp, MFA_AMR="mfa,otp")
    corp.person("erin", groups=["gh-admins"], amr=["pwd", "otp"])
    assert sign_in(client, corp, "erin").status_code == 302
    assert client.get("/admin/").status_code == 200
    login = AuditEvent.objects.get(action="auth.login.succeeded")
    assert login.metadata["second_factor"] == "provider"


def test_an_amr_the_operator_did_not_name_does_not(
    client: Client, settings: Any, corp: OidcProviderProcess, admins_mapped: None
) -> None:
    corp_with(settings, corp, MFA_AMR="hwk")
    corp.person("erin", groups=["gh-admins"], amr=["pwd", "otp"])
    answer = sign_in(client, corp, "erin")
    assert answer["Location"] == "/admin/account/2fa/"  # not let in: sent to enrol
    assert "_auth_user_id" not in client.session


def test_an_enrolled_person_gives_a_code_after_the_provider(
    client: Client, corp: OidcProviderProcess, admins_mapped: None
) -> None:
    corp.person("erin", groups=["gh-admins"])
    assert sign_in(client, corp, "erin")["Location"] == "/admin/account/2fa/"  # created, no second factor yet
    client.session.flush()
    erin = User.objects.get(username="erin")
    device = TOTPDevice.objects.create(user=erin, name="phone", confirmed=True)
    answer = sign_in(client, corp, "erin")
    assert answer.status_code == 302
    assert answer["Location"] == "/auth/oidc/verify/"
    assert "_auth_user_id" not in client.session  # nothing signed in before the code
    wrong = client.post("/auth/oidc/verify/", {"otp": "000000" if code_of(device) != "000000" else "111111"})
    assert wrong.status_code == 200
    assert b"not right" in wrong.content
    device.refresh_from_db()
    device.throttle_reset()  # django-otp makes a device wait after a wrong code
    right = client.post("/auth/oidc/verify/", {"otp": code_of(device)})
    assert right.status_code == 302
    assert client.get("/admin/").status_code == 200
    failed = AuditEvent.objects.get(action="auth.login.failed")
    assert failed.metadata["reason"] == "otp_invalid"
    assert failed.metadata["method"] == "oidc"


def test_the_code_page_without_a_parked_sign_in_refuses(client: Client, corp: OidcProviderProcess) -> None:
    answer = client.post("/auth/oidc/verify/", {"otp": "123456"})
    assert answer.status_code == 403
    assert b"expired" in answer.content


def test_wrong_codes_count_toward_the_login_lockout(corp: OidcProviderProcess) -> None:
    """The exchange's code check shares the password logins' counters: five wrong codes from one
    address lock the account there, for the exchange and the password login alike."""
    api = APIClient()
    corp.person("erin")
    assert api.post(EXCHANGE, {"provider": "corp", "id_token": corp.id_token_for("erin")}).status_code == 200
    erin = User.objects.get(username="erin")
    TOTPDevice.objects.create(user=erin, name="phone", confirmed=True)

    def exchange(otp: str) -> Any:
        body = {"provider": "corp", "id_token": corp.id_token_for("erin"), "otp": otp}
        return api.post(EXCHANGE, body, format="json")

    wrong = [exchange("000000") for _ in range(5)]
    assert [answer.json()["code"] for answer in wrong] == ["otp_invalid"] * 5
    locked = exchange("000000")
    assert locked.status_code == 429
    assert int(locked["Retry-After"]) > 0
    failed = AuditEvent.objects.filter(action="auth.login.failed")
    assert [(e.metadata["method"], e.metadata["provider"], e.metadata["reason"]) for e in failed] == [
        ("oidc", "corp", "otp_invalid")
    ] * 5
    refusals = [
        e.metadata["reason"] for e in AuditEvent.objects.filter(action="auth.sso.failed").order_by("id")
    ]
    assert refusals == ["otp_invalid"] * 5 + ["locked"]
    password = api.post("/api/auth/token/", {"username": "erin", "password": "x"}, format="json")
    assert password.status_code == 429

"""The login policy's second factor applies to single sign-on; a trusted provider's own counts."""

from typing import Any
from urllib.parse import parse_qs, urlsplit

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


# --- Lockouts through single sign-on are on the trail as password lockouts are ----------------


def _blocked_metric(scope: str) -> float:
    from gatehouse.metrics import LOGINS_BLOCKED

    return float(LOGINS_BLOCKED.labels(scope=scope)._value.get())


@pytest.fixture
def erin_enrolled(corp: OidcProviderProcess) -> User:
    """Erin, signed up through the exchange, with an authenticator: each exchange needs a code."""
    corp.person("erin")
    exchanged = APIClient().post(EXCHANGE, {"provider": "corp", "id_token": corp.id_token_for("erin")})
    assert exchanged.status_code == 200
    erin = User.objects.get(username="erin")
    TOTPDevice.objects.create(user=erin, name="phone", confirmed=True)
    return erin


def _exchange(corp: OidcProviderProcess, otp: str) -> Any:
    body = {"provider": "corp", "id_token": corp.id_token_for("erin"), "otp": otp}
    return APIClient().post(EXCHANGE, body, format="json")


def test_a_lockout_set_off_by_wrong_codes_is_audited_once(
    corp: OidcProviderProcess, erin_enrolled: User
) -> None:
    assert [_exchange(corp, "000000").status_code for _ in range(4)] == [401] * 4
    assert not AuditEvent.objects.filter(action="auth.login.locked").exists()
    assert _exchange(corp, "000000").json()["code"] == "otp_invalid"  # the fifth sets it off
    locked = AuditEvent.objects.get(action="auth.login.locked")
    assert locked.target_id == str(erin_enrolled.pk)
    assert locked.outcome == AuditEvent.Outcome.DENIED
    seconds = locked.metadata.pop("seconds")
    assert seconds > 0
    assert locked.metadata == {
        "method": "oidc",
        "provider": "corp",
        "channel": "api",
        "lockout": "account-address",
    }
    assert not AuditEvent.objects.filter(action="auth.login.blocked").exists()


def test_refusals_while_locked_are_counted_and_audited_once(
    corp: OidcProviderProcess, erin_enrolled: User
) -> None:
    for _ in range(5):
        _exchange(corp, "000000")
    before = _blocked_metric("account-address")
    refused = [_exchange(corp, "000000") for _ in range(3)]
    assert [answer.status_code for answer in refused] == [429] * 3
    assert all(int(answer["Retry-After"]) > 0 for answer in refused)
    assert _blocked_metric("account-address") - before == 3
    blocked = AuditEvent.objects.get(action="auth.login.blocked")
    assert blocked.target_id == str(erin_enrolled.pk)
    assert blocked.metadata.pop("retry_after") > 0
    assert blocked.metadata == {
        "method": "oidc",
        "provider": "corp",
        "channel": "api",
        "lockout": "account-address",
    }
    # The sign-in's own refusal is still recorded each time, with its reason.
    reasons = [
        e.metadata["reason"] for e in AuditEvent.objects.filter(action="auth.sso.failed").order_by("id")
    ]
    assert reasons == ["otp_invalid"] * 5 + ["locked"] * 3
    assert AuditEvent.objects.filter(action="auth.login.locked").count() == 1


def test_the_console_code_page_lockout_is_on_the_trail(
    client: Client, corp: OidcProviderProcess, erin_enrolled: User
) -> None:
    assert sign_in(client, corp, "erin")["Location"] == "/auth/oidc/verify/"
    wrong = [client.post("/auth/oidc/verify/", {"otp": "000000"}).status_code for _ in range(5)]
    assert wrong == [200] * 5
    locked = client.post("/auth/oidc/verify/", {"otp": "000000"})
    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session
    assert AuditEvent.objects.get(action="auth.login.locked").metadata["channel"] == "console"
    blocked = AuditEvent.objects.get(action="auth.login.blocked")
    assert (blocked.metadata["method"], blocked.metadata["channel"]) == ("oidc", "console")


def test_parking_a_sign_in_for_its_code_changes_the_session_key(
    client: Client, settings: Any, corp: OidcProviderProcess, erin_enrolled: User
) -> None:
    """A session id planted in the browser before the sign-in does not hold the parked sign-in."""
    start = client.get("/auth/oidc/corp/login/")
    planted = client.session.session_key
    assert planted
    back = corp.authorize(corp.browser("erin"), start["Location"])
    parts = urlsplit(back)
    assert client.get(parts.path, parse_qs(parts.query))["Location"] == "/auth/oidc/verify/"
    assert client.session.session_key != planted
    attacker = Client()
    attacker.cookies[settings.SESSION_COOKIE_NAME] = planted
    answer = attacker.post("/auth/oidc/verify/", {"otp": "000000"})
    assert answer.status_code == 403
    assert b"expired" in answer.content

"""POST /api/auth/oidc/token/: an ID token for an API session, checked like a login."""

import base64
import json
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey
from rest_framework.test import APIClient

from accounts.models import RefreshFamily, User
from audit.models import AuditEvent
from tests.accounts.helpers import bearer_client
from tests.sso.oidc_provider import OTHER_CLIENT, OidcProviderProcess

pytestmark = pytest.mark.django_db
URL = "/api/auth/oidc/token/"


def exchange(id_token: str, **extra: Any) -> Any:
    return APIClient().post(URL, {"provider": "corp", "id_token": id_token, **extra}, format="json")


def test_an_id_token_becomes_a_session(corp: OidcProviderProcess) -> None:
    corp.person("erin")
    answer = exchange(corp.id_token_for("erin"))
    assert answer.status_code == 200, answer.json()
    erin = User.objects.get(username="erin")
    assert RefreshFamily.objects.filter(user=erin).count() == 1
    me = bearer_client(answer.json()["access"]).get("/api/keys/")
    assert me.status_code == 200
    login = AuditEvent.objects.get(action="auth.login.succeeded")
    assert login.metadata["method"] == "oidc"
    assert login.metadata["channel"] == "api"


def test_an_id_token_is_good_for_one_exchange(corp: OidcProviderProcess) -> None:
    corp.person("erin")
    token = corp.id_token_for("erin")
    assert exchange(token).status_code == 200
    again = exchange(token)
    assert again.status_code == 401
    assert "already been exchanged" in again.json()["detail"]


def test_a_token_for_another_application_is_refused(corp: OidcProviderProcess) -> None:
    corp.person("erin")
    answer = exchange(corp.id_token_for("erin", client_id=OTHER_CLIENT))
    assert answer.status_code == 401
    assert "issued to another application" in answer.json()["detail"]
    assert not User.objects.filter(username="erin").exists()
    assert AuditEvent.objects.get(action="auth.sso.failed").metadata["reason"] == "wrong_audience"


def _reencoded(token: str, **changes: Any) -> str:
    head, body, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims.update(changes)
    new_body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{head}.{new_body}.{signature}"


def test_a_tampered_token_fails_its_signature(corp: OidcProviderProcess) -> None:
    corp.person("erin")
    corp.person("mallory")
    forged = _reencoded(corp.id_token_for("mallory"), preferred_username="erin", sub="1")
    answer = exchange(forged)
    assert answer.status_code == 401
    assert "signature" in answer.json()["detail"]


def test_a_token_signed_by_another_key_under_the_providers_key_id_is_refused(
    corp: OidcProviderProcess,
) -> None:
    corp.person("erin")
    genuine = corp.id_token_for("erin")
    header = json.loads(base64.urlsafe_b64decode(genuine.split(".")[0] + "=="))
    body = genuine.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    rogue = jwt.encode({"alg": "RS256", "kid": header["kid"]}, claims, RSAKey.generate_key(2048))
    answer = exchange(rogue)
    assert answer.status_code == 401
    assert "signature" in answer.json()["detail"]


def test_an_expired_token_is_refused(corp: OidcProviderProcess) -> None:
    corp.person("erin")
    corp.token_settings(id_token_expire_seconds=-600)
    try:
        token = corp.id_token_for("erin")
    finally:
        corp.token_settings(id_token_expire_seconds=300)
    answer = exchange(token)
    assert answer.status_code == 401
    assert "expired" in answer.json()["detail"]


def test_an_old_token_is_refused_even_if_unexpired(settings: Any, corp: OidcProviderProcess) -> None:
    settings.GATEHOUSE_OIDC_EXCHANGE_MAX_AGE = -1
    corp.person("erin")
    answer = exchange(corp.id_token_for("erin"))
    assert answer.status_code == 401
    assert "too long ago" in answer.json()["detail"]


def test_bad_input_is_a_clear_400(corp: OidcProviderProcess) -> None:
    assert APIClient().post(URL, {"provider": "corp"}, format="json").status_code == 400
    unknown = APIClient().post(URL, {"provider": "nope", "id_token": "x"}, format="json")
    assert unknown.status_code == 400
    assert "No identity provider" in str(unknown.json())
    garbage = exchange("not-a-jwt")
    assert garbage.status_code == 401
    assert "not valid" in garbage.json()["detail"]


def test_an_enrolled_person_must_add_a_code(corp: OidcProviderProcess) -> None:
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from tests.sso.test_second_factor import code_of

    corp.person("erin")
    assert exchange(corp.id_token_for("erin")).status_code == 200
    device = TOTPDevice.objects.create(user=User.objects.get(username="erin"), name="phone", confirmed=True)
    missing = exchange(corp.id_token_for("erin"))
    assert missing.status_code == 401
    assert missing.json()["code"] == "otp_required"
    assert exchange(corp.id_token_for("erin"), otp=code_of(device)).status_code == 200


def test_the_provider_list_is_public_and_names_no_secret(corp: OidcProviderProcess) -> None:
    answer = APIClient().get("/api/auth/oidc/providers/")
    assert answer.status_code == 200
    (row,) = answer.json()
    assert row["name"] == "corp"
    assert row["client_id"] == "gatehouse"
    assert corp.secrets["gatehouse"] not in json.dumps(answer.json())


def test_a_person_who_must_enrol_gets_an_enrolment_token(
    settings: Any, corp: OidcProviderProcess, alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    from accounts.roles import Role
    from sso.models import GroupMapping
    from sso.services import group_mapping_save
    from tests.accounts.helpers import AuthenticatorClock

    clock = AuthenticatorClock(monkeypatch)
    settings.GATEHOUSE_ADMIN_2FA_REQUIRED = True
    group_mapping_save(mapping=GroupMapping(provider="corp", group="gh-admins", role=Role.ADMIN), actor=alice)
    corp.person("erin", groups=["gh-admins"])
    refused = exchange(corp.id_token_for("erin"))
    assert refused.status_code == 403
    body = refused.json()
    assert body["code"] == "otp_enrolment_required"
    assert "access" not in body
    enrolling = bearer_client(body["enrolment_token"])
    assert enrolling.post("/api/auth/2fa/totp/").status_code == 201
    erin = User.objects.get(username="erin")
    confirmed = enrolling.post(
        "/api/auth/2fa/totp/confirm/", {"code": clock.code(erin, confirmed=False)}, format="json"
    )
    assert confirmed.status_code == 200
    assert bearer_client(confirmed.json()["access"]).get("/api/keys/").status_code == 200


def test_a_recovery_code_stands_in_for_the_authenticator(
    corp: OidcProviderProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    from accounts.services.two_factor import totp_enrolment_confirm, totp_enrolment_start
    from tests.accounts.helpers import AuthenticatorClock

    clock = AuthenticatorClock(monkeypatch)
    corp.person("erin")
    assert exchange(corp.id_token_for("erin")).status_code == 200
    erin = User.objects.get(username="erin")
    totp_enrolment_start(user=erin)
    codes = totp_enrolment_confirm(user=erin, code=clock.code(erin, confirmed=False)).recovery_codes
    assert exchange(corp.id_token_for("erin"), otp=codes[0]).status_code == 200
    reused = exchange(corp.id_token_for("erin"), otp=codes[0])
    assert reused.status_code == 401
    assert reused.json()["code"] == "otp_invalid"

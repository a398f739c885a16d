"""Self-service second factors over the API: enrol, confirm, recovery codes, regenerate, remove."""

from typing import Any

import pytest
from django.db import connection
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.test import APIClient

from accounts.models import RecoveryCodeDevice, User
from accounts.services import api_key_create
from audit.models import AuditEvent
from tests.accounts.helpers import AuthenticatorClock, bearer_client, login
from tests.conftest import PASSWORD

STATUS, TOTP, CONFIRM, CODES = (
    "/api/auth/2fa/",
    "/api/auth/2fa/totp/",
    "/api/auth/2fa/totp/confirm/",
    "/api/auth/2fa/recovery-codes/",
)
REFUSED = {"detail": "Invalid username, password or one-time code."}


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch, settings: Any) -> AuthenticatorClock:
    # No back-off between tries here: a wrong code is followed at once by the right one.
    settings.OTP_TOTP_THROTTLE_FACTOR = 0
    return AuthenticatorClock(monkeypatch)


def _token(username: str, otp: str | None = None) -> Any:
    data = {"username": username, "password": PASSWORD}
    if otp is not None:
        data["otp"] = otp
    return APIClient().post("/api/auth/token/", data, format="json")


def _enrolled(client: APIClient, user: User, clock: AuthenticatorClock) -> list[str]:
    """Enrol and confirm an authenticator for `user` through the API; its recovery codes."""
    assert client.post(TOTP).status_code == 201
    confirmed = client.post(CONFIRM, {"code": clock.code(user, confirmed=False)}, format="json")
    assert confirmed.status_code == 200, confirmed.content
    codes: list[str] = confirmed.json()["recovery_codes"]
    return codes


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def _raw_recovery_rows(user: User) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        table = RecoveryCodeDevice._meta.db_table
        cursor.execute(f"SELECT * FROM {table} WHERE user_id = %s", [user.pk])  # noqa: S608 - our own table name
        return cursor.fetchall()


def test_the_whole_round_enrol_confirm_log_in_recover_regenerate_remove(
    bob: User, clock: AuthenticatorClock
) -> None:
    client = bearer_client(login(bob).access)
    assert client.get(STATUS).json() == {
        "enrolled": False,
        "required": False,
        "totp_confirmed": False,
        "totp_pending": False,
        "recovery_codes_remaining": 0,
    }
    started = client.post(TOTP)
    assert started.status_code == 201
    body = started.json()
    assert body["config_url"].startswith("otpauth://totp/Gatehouse%3Abob?")
    assert f"secret={body['secret']}" in body["config_url"]
    # Unconfirmed, it counts for nothing: bob still logs in with his password alone.
    assert _token("bob").status_code == 200
    assert client.get(STATUS).json()["totp_pending"] is True

    # A wrong code confirms nothing.
    wrong = client.post(CONFIRM, {"code": _wrong(clock.code(bob, confirmed=False))}, format="json")
    assert wrong.status_code == 400
    assert "does not match" in wrong.json()["code"][0]
    assert not TOTPDevice.objects.filter(user=bob, confirmed=True).exists()
    assert not RecoveryCodeDevice.objects.filter(user=bob).exists()

    confirmed = client.post(CONFIRM, {"code": clock.code(bob, confirmed=False)}, format="json")
    assert confirmed.status_code == 200
    codes = confirmed.json()["recovery_codes"]
    assert len(codes) == 10
    assert len(set(codes)) == 10
    assert "access" not in confirmed.json()  # a logged-in confirmation starts no new session
    assert client.get(STATUS).json()["recovery_codes_remaining"] == 10

    # Now a login needs the second factor.
    assert _token("bob").json() == REFUSED
    assert _token("bob", clock.code(bob)).status_code == 200

    # A recovery code works once, in place of a code, and the login's row says so.
    assert _token("bob", codes[0].upper()).status_code == 200
    login_row = AuditEvent.objects.filter(action="auth.login.succeeded").order_by("-id").first()
    assert login_row is not None
    assert login_row.metadata["second_factor_method"] == "recovery_code"
    used = AuditEvent.objects.get(action="auth.2fa.recovery_code.used")
    assert used.metadata == {"for": "login", "channel": "api", "remaining": 9}
    assert _token("bob", codes[0]).json() == REFUSED
    assert client.get(STATUS).json()["recovery_codes_remaining"] == 9

    # Regenerating replaces every code: the old ones stop working.
    regenerated = client.post(CODES, {"otp": clock.code(bob)}, format="json")
    assert regenerated.status_code == 201
    fresh = regenerated.json()["recovery_codes"]
    assert not set(fresh) & set(codes)
    assert _token("bob", codes[1]).json() == REFUSED
    assert _token("bob", fresh[0]).status_code == 200

    # Removing needs a valid code; a wrong one removes nothing.
    refused = client.delete(TOTP, {"otp": _wrong(clock.code(bob))}, format="json")
    assert refused.status_code == 400
    assert "otp" in refused.json()
    assert TOTPDevice.objects.filter(user=bob, confirmed=True).exists()
    assert client.delete(TOTP, {"otp": fresh[1]}, format="json").status_code == 204
    assert not TOTPDevice.objects.filter(user=bob).exists()
    assert not RecoveryCodeDevice.objects.filter(user=bob).exists()
    assert _token("bob").status_code == 200

    actions = list(
        AuditEvent.objects.filter(action__startswith="auth.2fa.")
        .order_by("id")
        .values_list("action", flat=True)
    )
    assert actions == [
        "auth.2fa.enrolment.started",
        "auth.2fa.enrolment.confirmed",
        "auth.2fa.recovery_codes.generated",
        "auth.2fa.recovery_code.used",
        "auth.2fa.recovery_codes.generated",
        "auth.2fa.recovery_code.used",
        "auth.2fa.recovery_code.used",
        "auth.2fa.removed",
    ]
    assert AuditEvent.objects.get(action="auth.2fa.removed").metadata["proof"] == "recovery_code"


def test_recovery_codes_are_stored_only_hashed(bob: User, clock: AuthenticatorClock) -> None:
    codes = _enrolled(bearer_client(login(bob).access), bob, clock)
    rows = _raw_recovery_rows(bob)
    assert len(rows) == 1
    stored = " ".join(str(column) for column in rows[0])
    for code in codes:
        assert code not in stored
        assert code.replace("-", "") not in stored
    hashes = RecoveryCodeDevice.objects.get(user=bob).code_hashes
    assert len(hashes) == 10
    assert all(len(value) == 64 and int(value, 16) >= 0 for value in hashes)


def test_a_wrong_confirmation_keeps_the_devices_throttle(bob: User, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = AuthenticatorClock(monkeypatch)
    client = bearer_client(login(bob).access)
    client.post(TOTP)
    assert (
        client.post(CONFIRM, {"code": _wrong(clock.code(bob, confirmed=False))}, format="json").status_code
        == 400
    )
    assert TOTPDevice.objects.get(user=bob).throttling_failure_count == 1


def test_starting_again_replaces_the_pending_authenticator(bob: User, clock: AuthenticatorClock) -> None:
    client = bearer_client(login(bob).access)
    first = client.post(TOTP).json()["secret"]
    second = client.post(TOTP).json()["secret"]
    assert first != second
    assert TOTPDevice.objects.filter(user=bob).count() == 1


def test_a_confirmed_authenticator_must_be_removed_before_another_is_enrolled(
    bob: User, clock: AuthenticatorClock
) -> None:
    client = bearer_client(login(bob).access)
    _enrolled(client, bob, clock)
    response = client.post(TOTP)
    assert response.status_code == 400
    assert "Remove it first" in response.json()["non_field_errors"][0]
    assert TOTPDevice.objects.filter(user=bob).count() == 1


@pytest.mark.parametrize(
    "case",
    [
        (CONFIRM, "post", {}, "code", "required"),
        (CONFIRM, "post", {"code": "12ab56"}, "code", "6 to 8 digits"),
        (CONFIRM, "post", {"code": "123456"}, "non_field_errors", "No enrolment is under way"),
        (TOTP, "delete", {"otp": "123456"}, "non_field_errors", "no second factor"),
        (TOTP, "delete", {"otp": "not a code"}, "otp", "recovery codes"),
        (CODES, "post", {}, "otp", "required"),
        (CODES, "post", {"otp": "123456"}, "non_field_errors", "no second factor"),
    ],
)
def test_bad_input_is_a_clear_400_and_writes_nothing(
    bob: User, case: tuple[str, str, dict[str, str], str, str]
) -> None:
    path, method, payload, field, words = case
    client = bearer_client(login(bob).access)
    before = AuditEvent.objects.filter(action__startswith="auth.2fa.").count()
    response = getattr(client, method)(path, payload, format="json")
    assert response.status_code == 400
    assert words in response.json()[field][0]
    assert not TOTPDevice.objects.filter(user=bob).exists()
    assert not RecoveryCodeDevice.objects.filter(user=bob).exists()
    assert AuditEvent.objects.filter(action__startswith="auth.2fa.").count() == before


def test_the_token_endpoint_says_what_an_otp_may_be(bob: User) -> None:
    response = _token("bob", "abc")
    assert response.status_code == 400
    assert "recovery codes" in response.json()["otp"][0]


def test_an_api_key_cannot_manage_second_factors(bob: User) -> None:
    _key, raw = api_key_create(user=bob, name="k", scopes=["chat"], actor=bob)
    client = bearer_client(raw)
    assert client.get(STATUS).status_code == 403
    assert client.post(TOTP).status_code == 403
    assert not TOTPDevice.objects.filter(user=bob).exists()


def test_bob_cannot_touch_alices_second_factor(alice: User, bob: User, clock: AuthenticatorClock) -> None:
    _enrolled(bearer_client(login(alice).access), alice, clock)
    alices_device = TOTPDevice.objects.get(user=alice)
    bobs = bearer_client(login(bob).access)
    # Alice's current code is no proof for bob: he has no second factor, and hers is not his.
    response = bobs.delete(TOTP, {"otp": clock.code(alice)}, format="json")
    assert response.status_code == 400
    assert bobs.post(CODES, {"otp": clock.code(alice)}, format="json").status_code == 400
    assert bobs.get(STATUS).json()["enrolled"] is False
    assert TOTPDevice.objects.filter(pk=alices_device.pk, confirmed=True).exists()
    assert RecoveryCodeDevice.objects.get(user=alice).remaining == 10
    # Nor does confirming his own enrolment reach hers.
    bobs.post(TOTP)
    assert bobs.post(CONFIRM, {"code": clock.code(alice)}, format="json").status_code == 400
    assert TOTPDevice.objects.filter(user=alice).count() == 1


def test_the_schema_documents_the_endpoints() -> None:
    schema = APIClient().get("/api/schema/", HTTP_ACCEPT="application/json").json()
    paths = schema["paths"]
    assert set(paths["/api/auth/2fa/totp/"]) >= {"post", "delete"}
    assert "post" in paths["/api/auth/2fa/totp/confirm/"]
    assert "post" in paths["/api/auth/2fa/recovery-codes/"]
    assert "get" in paths["/api/auth/2fa/"]
    assert "enrolmentToken" in schema["components"]["securitySchemes"]

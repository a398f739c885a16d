"""A second factor required per role, and the enrolment token that lets its holders enrol."""

from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.test import Client, override_settings
from rest_framework.test import APIClient

from accounts.models import TwoFactorRolePolicy, User
from accounts.roles import Role
from accounts.services import sessions_revoke_all, user_create
from accounts.two_factor import two_factor_required
from audit.models import AuditEvent
from tests.accounts.helpers import AuthenticatorClock, bearer_client
from tests.conftest import PASSWORD

TOKEN, STATUS, TOTP, CONFIRM, CODES = (
    "/api/auth/token/",
    "/api/auth/2fa/",
    "/api/auth/2fa/totp/",
    "/api/auth/2fa/totp/confirm/",
    "/api/auth/2fa/recovery-codes/",
)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> AuthenticatorClock:
    return AuthenticatorClock(monkeypatch)


def _require(role: Role, *, required: bool = True) -> TwoFactorRolePolicy:
    return TwoFactorRolePolicy.objects.create(role=Group.objects.get(name=role.value), required=required)


def _token(username: str, otp: str | None = None) -> Any:
    data = {"username": username, "password": PASSWORD}
    if otp is not None:
        data["otp"] = otp
    return APIClient().post(TOKEN, data, format="json")


def test_the_requirement_follows_the_role(alice: User, bob: User, carol: User) -> None:
    assert not two_factor_required(carol)
    _require(Role.AUDITOR)
    assert two_factor_required(carol)
    assert not two_factor_required(bob)
    # A superuser counts as an admin, not as every role.
    assert not two_factor_required(alice)
    TwoFactorRolePolicy.objects.filter(role__name=Role.AUDITOR.value).update(required=False)
    assert not two_factor_required(carol)


@override_settings(GATEHOUSE_ADMIN_2FA_REQUIRED=True)
def test_the_admin_setting_still_requires_it_of_admins(alice: User, bob: User) -> None:
    assert two_factor_required(alice)
    assert not two_factor_required(bob)


def test_a_required_auditor_enrols_with_the_token_and_then_logs_in_with_a_code(
    carol: User, clock: AuthenticatorClock
) -> None:
    _require(Role.AUDITOR)
    refused = _token("carol")
    assert refused.status_code == 403
    body = refused.json()
    assert body["code"] == "otp_enrolment_required"
    assert body["enrolment_token"].startswith("enrol_")
    assert body["expires_in"] == 600
    assert "access" not in body
    assert AuditEvent.objects.get(action="auth.login.failed").metadata["reason"] == "otp_enrolment_required"

    enrolling = bearer_client(body["enrolment_token"])
    assert enrolling.get(STATUS).json()["required"] is True
    assert enrolling.post(TOTP).status_code == 201
    confirmed = enrolling.post(CONFIRM, {"code": clock.code(carol, confirmed=False)}, format="json")
    assert confirmed.status_code == 200, confirmed.content
    pair = confirmed.json()
    assert len(pair["recovery_codes"]) == 10
    # Confirming logged her in: the pair works, and the login is on the trail as an enrolment.
    assert bearer_client(pair["access"]).get("/api/keys/").status_code == 200
    login_row = AuditEvent.objects.get(action="auth.login.succeeded")
    assert login_row.metadata["enrolment"] is True
    assert login_row.metadata["second_factor_method"] == "totp"

    # The token is spent: it opens nothing any more.
    assert enrolling.get(STATUS).status_code == 401
    assert enrolling.post(TOTP).status_code == 401
    # From now on carol logs in with her password and a code.
    assert _token("carol").status_code == 401
    assert _token("carol", clock.code(carol)).status_code == 200


def test_the_enrolment_token_opens_nothing_else(carol: User) -> None:
    _require(Role.AUDITOR)
    token = _token("carol").json()["enrolment_token"]
    enrolling = bearer_client(token)
    assert enrolling.get("/api/keys/").status_code == 401
    assert enrolling.post("/api/ws-ticket/").status_code == 401
    assert enrolling.get("/api/audit/events/").status_code == 401
    assert enrolling.post("/api/auth/logout/", {"all": True}, format="json").status_code == 401
    # Among the second-factor endpoints, only enrolling: not removing, not recovery codes.
    assert enrolling.delete(TOTP, {"otp": "123456"}, format="json").status_code == 403
    assert enrolling.post(CODES, {"otp": "123456"}, format="json").status_code == 403
    # It still works for what it is for.
    assert enrolling.get(STATUS).status_code == 200


def test_an_enrolment_token_is_used_up_by_its_confirmation(carol: User, clock: AuthenticatorClock) -> None:
    _require(Role.AUDITOR)
    token = _token("carol").json()["enrolment_token"]
    enrolling = bearer_client(token)
    enrolling.post(TOTP)
    code = clock.code(carol, confirmed=False)
    assert enrolling.post(CONFIRM, {"code": code}, format="json").status_code == 200
    # A second confirmation with the same token (and a fresh code) is refused outright.
    again = enrolling.post(CONFIRM, {"code": clock.code(carol)}, format="json")
    assert again.status_code == 401
    assert AuditEvent.objects.filter(action="auth.login.succeeded").count() == 1


def test_an_enrolment_token_dies_with_the_persons_sessions(carol: User) -> None:
    _require(Role.AUDITOR)
    token = _token("carol").json()["enrolment_token"]
    sessions_revoke_all(user=User.objects.get(pk=carol.pk), reason="logout_all")
    assert bearer_client(token).get(STATUS).status_code == 401


def test_a_made_up_enrolment_token_is_refused(carol: User) -> None:
    assert bearer_client("enrol_" + "x" * 43).get(STATUS).status_code == 401


def test_the_enrolment_refusal_needs_the_right_password(carol: User) -> None:
    _require(Role.AUDITOR)
    response = APIClient().post(TOKEN, {"username": "carol", "password": "wrong"}, format="json")
    assert response.status_code == 401
    assert "enrolment_token" not in response.json()


def test_someone_holding_a_required_and_a_free_role_must_enrol(db: None) -> None:
    _user = user_create(username="erin", password=PASSWORD, roles=[Role.MEMBER])
    Group.objects.get(name=Role.AUDITOR.value).user_set.add(_user)
    _require(Role.AUDITOR)
    assert two_factor_required(_user)


def test_the_requirement_is_edited_in_the_console_and_audited(alice: User, client: Client) -> None:
    client.force_login(alice)
    role = Group.objects.get(name=Role.AUDITOR.value)
    added = client.post(
        "/admin/accounts/twofactorrolepolicy/add/", {"role": role.pk, "required": "on"}, follow=False
    )
    assert added.status_code == 302, added.content[:500]
    policy = TwoFactorRolePolicy.objects.get(role=role)
    assert policy.required
    created = AuditEvent.objects.get(action="auth.2fa.role_policy.created")
    assert created.metadata["after"] == {"role": "auditor", "required": True}
    assert AuditEvent.objects.get(action="console.added").target_type == "accounts.twofactorrolepolicy"
    changed = client.post(f"/admin/accounts/twofactorrolepolicy/{policy.pk}/change/", {"role": role.pk})
    assert changed.status_code == 302
    event = AuditEvent.objects.get(action="auth.2fa.role_policy.changed")
    assert event.metadata["before"]["required"] is True
    assert event.metadata["after"]["required"] is False
    assert AuditEvent.objects.filter(action="console.changed").exists()


def test_a_team_cannot_be_given_a_requirement(alice: User, client: Client) -> None:
    from accounts.services import team_create

    team = team_create(name="ops", actor=alice)
    client.force_login(alice)
    response = client.post(
        "/admin/accounts/twofactorrolepolicy/add/", {"role": team.group_id, "required": "on"}
    )
    assert response.status_code == 200  # the form again
    assert not TwoFactorRolePolicy.objects.exists()


def test_an_admin_resets_someones_second_factor_from_the_user_list(
    alice: User, bob: User, client: Client, clock: AuthenticatorClock
) -> None:
    from accounts.services import two_factor_enroll

    two_factor_enroll(user=bob, actor=None)
    client.force_login(alice)
    response = client.post(
        "/admin/accounts/user/", {"action": "reset_second_factors", "_selected_action": [bob.pk]}
    )
    assert response.status_code == 302
    assert _token("bob").status_code == 200
    reset = AuditEvent.objects.get(action="auth.2fa.reset")
    assert reset.actor == alice
    assert reset.metadata == {"devices": 1}


def test_a_view_only_officer_cannot_reset_second_factors(olga: User, bob: User, client: Client) -> None:
    from accounts.services import two_factor_enroll

    two_factor_enroll(user=bob, actor=None)
    client.force_login(olga)
    client.post("/admin/accounts/user/", {"action": "reset_second_factors", "_selected_action": [bob.pk]})
    assert not AuditEvent.objects.filter(action="auth.2fa.reset").exists()
    assert _token("bob").status_code == 401


def test_an_enrolment_token_is_redeemed_once_even_before_anyone_is_enrolled(carol: User) -> None:
    from accounts.enrolment_tokens import enrolment_token_issue, enrolment_token_redeem, enrolment_token_user

    token = enrolment_token_issue(user=carol)
    assert enrolment_token_user(token=token) == carol
    assert enrolment_token_redeem(token=token) is True
    assert enrolment_token_redeem(token=token) is False
    assert enrolment_token_user(token=token) is None

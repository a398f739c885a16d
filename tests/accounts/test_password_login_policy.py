"""Password login turned off, for everyone or per role; break-glass accounts keep it; both doors."""

from typing import Any

import pytest
from django.test import Client, override_settings
from rest_framework.test import APIClient

from accounts.models import User
from audit.models import AuditEvent
from gatehouse.checks import password_login_refusals
from tests.conftest import PASSWORD

LOGIN = "/admin/login/?next=/admin/"
SSO_INSTEAD = "Password login is turned off for this account. Sign in with single sign-on instead."
REFUSED = "Invalid username, password or one-time code."


def _api(username: str, password: str = PASSWORD) -> Any:
    return APIClient().post("/api/auth/token/", {"username": username, "password": password}, format="json")


def _console(username: str, password: str = PASSWORD) -> tuple[int, list[str]]:
    response = Client().post(LOGIN, {"username": username, "password": password})
    errors = [str(e) for e in response.context["form"].non_field_errors()] if response.context else []
    return response.status_code, errors


@override_settings(GATEHOUSE_PASSWORD_LOGIN=False, GATEHOUSE_BREAK_GLASS_USERS=["alice"])
def test_off_for_everyone_but_the_break_glass_admin(alice: User, bob: User, olga: User) -> None:
    refused = _api("bob")
    assert refused.status_code == 403
    assert refused.json() == {"detail": SSO_INSTEAD, "code": "password_login_disabled"}
    assert _console("olga") == (200, [SSO_INSTEAD])
    # The break-glass admin still logs in, on both doors.
    assert _api("alice").status_code == 200
    assert _console("alice")[0] == 302
    reasons = [
        e.metadata["reason"] for e in AuditEvent.objects.filter(action="auth.login.failed").order_by("id")
    ]
    assert reasons == ["password_login_disabled", "password_login_disabled"]
    channels = [
        e.metadata["channel"] for e in AuditEvent.objects.filter(action="auth.login.failed").order_by("id")
    ]
    assert channels == ["api", "console"]


@override_settings(
    GATEHOUSE_PASSWORD_LOGIN_DISABLED_ROLES=["member", "auditor"], GATEHOUSE_BREAK_GLASS_USERS=[]
)
def test_off_per_role(alice: User, bob: User, carol: User, olga: User) -> None:
    assert _api("bob").status_code == 403
    assert _api("carol").status_code == 403
    assert _api("olga").status_code == 200
    assert _api("alice").status_code == 200  # a superuser counts as an admin, not as a member
    assert _console("olga")[0] == 302


@override_settings(GATEHOUSE_PASSWORD_LOGIN=False, GATEHOUSE_BREAK_GLASS_USERS=[])
def test_the_refusal_comes_only_after_the_right_password(bob: User) -> None:
    wrong = _api("bob", "not-his-password")
    assert wrong.status_code == 401
    assert wrong.json() == {"detail": REFUSED}
    assert _console("bob", "not-his-password") == (200, [REFUSED])
    unknown = _api("nobody")
    assert unknown.json() == {"detail": REFUSED}
    reasons = {e.metadata["reason"] for e in AuditEvent.objects.filter(action="auth.login.failed")}
    assert reasons == {"password"}


@override_settings(GATEHOUSE_PASSWORD_LOGIN=False, GATEHOUSE_BREAK_GLASS_USERS=[])
def test_a_refusal_does_not_count_toward_the_lockout(bob: User, settings: Any) -> None:
    settings.GATEHOUSE_LOGIN_MAX_FAILURES_PER_ACCOUNT = 2
    assert [_api("bob").status_code for _ in range(3)] == [403, 403, 403]
    assert not AuditEvent.objects.filter(action="auth.login.locked").exists()


@pytest.mark.parametrize(
    ("roles", "users", "words"),
    [
        (["members"], ["admin"], "'members' is not a role"),
        (["member", "root"], ["admin"], "'root' is not a role"),
        ([], ["admin", ""], "empty name"),
    ],
)
def test_the_settings_are_checked(roles: list[str], users: list[str], words: str) -> None:
    refusals = password_login_refusals(disabled_roles=roles, break_glass_users=users)
    assert len(refusals) == 1
    assert words in refusals[0]


def test_good_settings_pass() -> None:
    assert password_login_refusals(disabled_roles=["member", "auditor"], break_glass_users=["admin"]) == []

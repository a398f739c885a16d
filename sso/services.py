"""Single sign-on: a verified ID token becomes a Gatehouse person, with the roles and teams the
provider's groups map to (`sso_sign_in`); the API's exchange turns one into a session
(`sso_tokens_obtain`).

A first sign-in creates the person (just in time) when the provider allows it, with an
unusable password: they sign in through the provider. A local account of the same name (in
any letter case) is never taken over: an admin links it first, unless SCIM provisioned it for
people to sign in to (no password, no provider account yet). A deactivated person is refused,
whatever the provider says. Every sign-in, refusal, link and mapped change is on the audit
trail.
"""

import hashlib
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone
from django_otp.models import Device

from accounts.enrolment_tokens import enrolment_token_issue
from accounts.models import Team, User
from accounts.roles import Role
from accounts.services.login import (
    LOGIN_LOCKED_MESSAGE,
    LoginGuessWrong,
    LoginLockedOut,
    login_attempt_check,
)
from accounts.services.sessions import TokenPair, auth_session_open
from accounts.services.users import group_membership_changes_record, sessions_revoke_all, user_create
from accounts.two_factor import two_factor_enrolled, two_factor_required, two_factor_verify
from audit.audited_writes import audited_delete, audited_save
from audit.models import AuditEvent
from audit.services import audit_event_record
from sso.id_tokens import id_token_verify
from sso.models import ExternalIdentity, GroupMapping
from sso.providers import OidcProvider, oidc_provider_claims_satisfy_mfa
from sso.refusals import SsoRefused
from sso.selectors import external_identity_get, group_mapping_access

_USERNAME = re.compile(r"^[\w.@+-]{1,150}$")


@dataclass(frozen=True)
class SsoSignIn:
    """A person the provider vouched for; `provider_mfa`: its token proves a second factor."""

    user: User
    provider: str
    created: bool
    provider_mfa: bool
    sessions_ended: int


def sso_failure_record(*, provider: str, refusal: SsoRefused, channel: str, subject: str = "") -> None:
    """Audit a refused sign-in (in its own transaction: the refusal rolls nothing of it back)."""
    identity = external_identity_get(provider=provider, subject=subject) if subject else None
    who: dict[str, Any] = (
        {"actor": identity.user, "actor_kind": AuditEvent.ActorKind.ANONYMOUS, "target": identity.user}
        if identity is not None
        else {"actor_display": f"{provider}:{subject}"[:150] if subject else provider}
    )
    audit_event_record(
        action="auth.sso.failed",
        outcome=AuditEvent.Outcome.FAILURE,
        metadata={"provider": provider, "channel": channel, "reason": refusal.reason},
        **who,
    )


def _groups(provider: OidcProvider, claims: Mapping[str, Any]) -> list[str]:
    raw = claims.get(provider.groups_claim, [])
    if isinstance(raw, str):
        return [raw]
    return [str(group) for group in raw] if isinstance(raw, list) else []


def _username(provider: OidcProvider, claims: Mapping[str, Any]) -> str:
    for claim in (provider.username_claim, "email"):
        value = claims.get(claim)
        if isinstance(value, str) and _USERNAME.fullmatch(value):
            return value
    raise SsoRefused(
        code="not_provisioned",
        message=(
            "The identity provider sent no usable user name; ask an administrator to set "
            f"GATEHOUSE_OIDC_{provider.name.upper()}_USERNAME_CLAIM."
        ),
        reason="no_username",
    )


def _person_create(*, provider: OidcProvider, claims: Mapping[str, Any], roles: set[str]) -> User:
    username = _username(provider, claims)
    if User.objects.filter(username__iexact=username).exists():
        raise SsoRefused(
            code="username_taken",
            message=(
                f"An account named {username} already exists in Gatehouse and is not linked to "
                f"{provider.label}; an administrator can link it (Single sign-on, External identities)."
            ),
        )
    if not roles:
        if not provider.default_role:
            raise SsoRefused(
                code="no_role",
                message="None of your groups at the identity provider gives access to Gatehouse.",
            )
        roles = {provider.default_role}
    email = claims.get("email") if claims.get("email_verified") else ""
    return user_create(
        username=username,
        password=None,
        email=email if isinstance(email, str) else "",
        roles=[Role(role) for role in roles],
        is_staff=bool(roles - {Role.MEMBER.value}),
    )


def _mapped_access_apply(*, user: User, provider: OidcProvider, groups: list[str]) -> int:
    """Give the mapped roles and teams, take the governed ones no group maps to any more.

    Returns how many sessions ended: a person who lost a role or team loses every session.
    """
    access = group_mapping_access(provider=provider.name, groups=groups)
    before = set(user.groups.values_list("name", flat=True))
    roles_now = {name for name in before if name in {role.value for role in Role}}
    teams = {team.id: team for team in Team.objects.filter(id__in=access.governed_team_ids | access.team_ids)}
    team_groups_now = {team.group.name for team in teams.values() if team.group.name in before}
    wanted_roles = (roles_now - access.governed_roles) | access.roles
    wanted_team_groups = {teams[tid].group.name for tid in access.team_ids if tid in teams}
    governed_team_groups = {teams[tid].group.name for tid in access.governed_team_ids if tid in teams}
    wanted_team_groups |= team_groups_now - governed_team_groups
    after = (before - roles_now - team_groups_now) | wanted_roles | wanted_team_groups
    if after == before:
        return 0
    user.groups.add(*Group.objects.filter(name__in=after - before))
    user.groups.remove(*Group.objects.filter(name__in=before - after))
    group_membership_changes_record(user=user, before=before, after=after, actor=None)
    staff = bool(wanted_roles - {Role.MEMBER.value}) or user.is_superuser
    if staff != user.is_staff:
        user.is_staff = staff
        user.save(update_fields=["is_staff"])
    if not before - after:
        return 0
    ended = sessions_revoke_all(user=user, reason="sso_groups")
    audit_event_record(
        action="auth.sso.access_reduced",
        actor_display=f"sso:{provider.name}",
        actor_kind=AuditEvent.ActorKind.SYSTEM,
        target=user,
        metadata={"provider": provider.name, "removed": sorted(before - after), "sessions_ended": ended},
    )
    return ended


def _provisioned_account(username: str) -> User | None:
    """The account SCIM provisioned under `username` for the identity provider to sign in to:
    managed by SCIM, with no password and no provider account linked yet."""
    account = User.objects.filter(
        username__iexact=username, scim_link__isnull=False, external_identities__isnull=True
    ).first()
    return account if account is not None and not account.has_usable_password() else None


def _identity_first(
    *, provider: OidcProvider, claims: Mapping[str, Any], subject: str, groups: list[str]
) -> ExternalIdentity:
    """Link a first sign-in to its person: the one SCIM provisioned under the name, else a new
    one (just in time, where allowed). Raises `SsoRefused`."""
    user = _provisioned_account(_username(provider, claims))
    just_in_time = user is None
    if user is None:
        if not provider.jit:
            raise SsoRefused(
                code="not_provisioned",
                message="You have no Gatehouse account yet; ask an administrator to provision one.",
            )
        access = group_mapping_access(provider=provider.name, groups=groups)
        user = _person_create(provider=provider, claims=claims, roles=set(access.roles))
    identity = ExternalIdentity.objects.create(
        user=user, provider=provider.name, subject=subject, email=user.email
    )
    audit_event_record(
        action="auth.sso.linked",
        actor_display=f"sso:{provider.name}",
        actor_kind=AuditEvent.ActorKind.SYSTEM,
        target=user,
        metadata={
            "provider": provider.name,
            "just_in_time": just_in_time,
            "provisioned_by_scim": not just_in_time,
        },
    )
    return identity


@transaction.atomic
def sso_sign_in(*, provider: OidcProvider, claims: Mapping[str, Any]) -> SsoSignIn:
    """The person `claims` (a verified ID token's) name, created or updated; raises `SsoRefused`.

    Nothing is written when it raises: the refusal's audit row is the caller's to write
    (`sso_failure_record`), outside this transaction.
    """
    subject = str(claims["sub"])
    groups = _groups(provider, claims)
    identity = (
        ExternalIdentity.objects.select_for_update()
        .select_related("user")
        .filter(provider=provider.name, subject=subject)
        .first()
    )
    created = identity is None
    if identity is None:
        identity = _identity_first(provider=provider, claims=claims, subject=subject, groups=groups)
    user = identity.user
    if not user.is_active:
        raise SsoRefused(code="account_disabled", message="This account is disabled.")
    ended = _mapped_access_apply(user=user, provider=provider, groups=groups)
    ExternalIdentity.objects.filter(pk=identity.pk).update(last_sign_in_at=timezone.now())
    return SsoSignIn(
        user=user,
        provider=provider.name,
        created=created,
        provider_mfa=oidc_provider_claims_satisfy_mfa(provider, claims),
        sessions_ended=ended,
    )


def sso_second_factor_check(
    *, sign_in: SsoSignIn, otp: str | None, client_ip: str | None, channel: str
) -> bool:
    """Apply the login policy's second factor to a sign-in; True when a code was checked.

    The provider's own second factor (its `amr`/`acr`, where the operator trusts them) stands
    in for Gatehouse's. Otherwise anyone with an authenticator must give its code (under the
    same lockout counters as password logins, its failures and lockouts audited alike by
    `login_attempt_check`), and someone whose role requires one and has
    none is refused with an enrolment token. Raises `SsoRefused`.
    """
    user = sign_in.user
    if sign_in.provider_mfa:
        return False
    if not two_factor_enrolled(user):
        if two_factor_required(user):
            raise SsoRefused(
                code="otp_enrolment_required",
                message=(
                    "Your role requires a second factor and you have none yet: enrol an "
                    "authenticator now (or sign in with your identity provider's multi-factor "
                    "authentication, where Gatehouse trusts it)."
                ),
                enrolment_token=enrolment_token_issue(user=user),
            )
        return False
    if not otp:
        raise SsoRefused(code="otp_required", message="Enter the one-time code of your authenticator.")

    def code_check() -> Device:
        device = two_factor_verify(
            user=user, code=otp, metadata={"for": "login", "channel": channel, "method": "oidc"}
        )
        if device is None:
            raise LoginGuessWrong("otp_invalid")
        return device

    try:
        device = login_attempt_check(
            username=user.get_username(),
            client_ip=client_ip,
            check=code_check,
            audit_metadata={"method": "oidc", "provider": sign_in.provider, "channel": channel},
        )
    except LoginLockedOut as locked:  # counted and audited (auth.login.blocked) on the way
        raise SsoRefused(
            code="locked", message=LOGIN_LOCKED_MESSAGE, retry_after=locked.lockout.retry_after_seconds
        ) from None
    except LoginGuessWrong:  # audited (auth.login.failed, and auth.login.locked if it locked)
        raise SsoRefused(code="otp_invalid", message="That one-time code is not right.") from None
    user.otp_device = device  # type: ignore[attr-defined]  # read by django-otp's login hook
    return True


def _exchange_once(*, raw: str, claims: Mapping[str, Any]) -> None:
    """Refuse an ID token exchanged before, or issued too long ago to be exchanged now."""
    now = int(time.time())
    issued_at = claims.get("iat")
    if not isinstance(issued_at, int | float) or now - issued_at > settings.GATEHOUSE_OIDC_EXCHANGE_MAX_AGE:
        raise SsoRefused(
            code="invalid_token",
            message="This ID token was issued too long ago to start a session; sign in again.",
            reason="too_old",
        )
    expires = int(claims.get("exp", now)) + settings.GATEHOUSE_OIDC_LEEWAY_SECONDS
    digest = hashlib.sha256(raw.encode()).hexdigest()
    if not cache.add(f"sso:exchanged:{digest}", 1, timeout=max(expires - now, 1)):
        raise SsoRefused(
            code="invalid_token",
            message="This ID token has already been exchanged for a session; sign in again.",
            reason="replayed",
        )


def sso_tokens_obtain(
    *, provider: OidcProvider, id_token: str, otp: str | None, client_ip: str | None
) -> TokenPair:
    """Exchange an ID token the provider issued to Gatehouse for an API session (a JWT pair).

    The session follows the rules of password sessions (rotation, revocation, lifetime). Each
    ID token is good for one exchange, within GATEHOUSE_OIDC_EXCHANGE_MAX_AGE of its issue.
    Raises `SsoRefused`; every refusal is audited.
    """
    subject = ""
    try:
        claims = id_token_verify(provider=provider, raw=id_token)
        subject = str(claims.get("sub", ""))
        _exchange_once(raw=id_token, claims=claims)
        sign_in = sso_sign_in(provider=provider, claims=claims)
        second_factor = sso_second_factor_check(sign_in=sign_in, otp=otp, client_ip=client_ip, channel="api")
    except SsoRefused as refused:
        sso_failure_record(provider=provider.name, refusal=refused, channel="api", subject=subject)
        raise
    return auth_session_open(
        user=sign_in.user,
        login={
            "method": "oidc",
            "provider": provider.name,
            "channel": "api",
            "second_factor": "provider" if sign_in.provider_mfa else second_factor,
        },
    )


def _mapping_state(mapping: GroupMapping) -> dict[str, Any]:
    return {
        "provider": mapping.provider,
        "group": mapping.group,
        "role": mapping.role,
        "team": mapping.team_id,
    }


def group_mapping_save(*, mapping: GroupMapping, actor: User) -> GroupMapping:
    """Create or change a mapping, audited with before and after; ValidationError writes nothing."""
    return audited_save(instance=mapping, actor=actor, action="sso.mapping", state=_mapping_state)


def group_mapping_delete(*, mapping: GroupMapping, actor: User) -> None:
    audited_delete(instance=mapping, actor=actor, action="sso.mapping", state=_mapping_state)


def _identity_state(identity: ExternalIdentity) -> dict[str, Any]:
    return {"provider": identity.provider, "subject": identity.subject, "user": identity.user_id}


def external_identity_save(*, identity: ExternalIdentity, actor: User) -> ExternalIdentity:
    """Link a person to a provider account (an admin's act); ValidationError writes nothing."""
    return audited_save(instance=identity, actor=actor, action="sso.identity", state=_identity_state)


def external_identity_delete(*, identity: ExternalIdentity, actor: User) -> None:
    """Unlink: that provider account no longer signs in as the person (a new sign-in would
    create a new person, unless the name is taken)."""
    audited_delete(instance=identity, actor=actor, action="sso.identity", state=_identity_state)

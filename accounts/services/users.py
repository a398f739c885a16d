"""Users and their roles."""

import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from django.contrib.auth.models import Group
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.acting_user import acting_user_current
from accounts.credential_events import credentials_changed_notify
from accounts.models import RefreshFamily, User
from accounts.roles import Role
from audit.models import AuditEvent
from audit.services import audit_event_record


def role_groups_ensure() -> list[Group]:
    """Create any missing role group (the data migration does this on a fresh database)."""
    return [Group.objects.get_or_create(name=role.value)[0] for role in Role]


def _system_or(actor: User | None, actor_name: str = "") -> dict[str, object]:
    """The audit record's actor: `actor`, else the system, named `actor_name` when given."""
    if actor is not None:
        return {"actor": actor}
    return {"actor_display": actor_name or "system", "actor_kind": AuditEvent.ActorKind.SYSTEM}


@transaction.atomic
def user_create(
    *,
    username: str,
    password: str | None,
    email: str = "",
    roles: Iterable[Role] = (),
    is_staff: bool = False,
    is_superuser: bool = False,
    created_by: User | None = None,
    actor_name: str = "",
) -> User:
    """Create a user; `actor_name` names who did it when that is not a user (a provisioning
    token). Raises ValidationError for a username or email Django refuses."""
    user = User(username=username, email=email, is_staff=is_staff, is_superuser=is_superuser)
    if password is None:
        user.set_unusable_password()
    else:
        user.set_password(password)
    user.full_clean(exclude=["password"])
    user.save()
    role_names = sorted(Role(role).value for role in roles)
    if role_names:
        user.groups.add(*Group.objects.filter(name__in=role_names))
    audit_event_record(
        action="user.created",
        target=user,
        # The username is the target's display, which erasure can blank; metadata is chained.
        metadata={"after": {"roles": role_names, "is_staff": is_staff}},
        **_system_or(created_by, actor_name),  # type: ignore[arg-type]
    )
    return user


def group_membership_changes_record(
    *, user: User, before: set[str], after: set[str], actor: User | None
) -> None:
    """Audit each role granted or revoked, and each team joined or left, between two group sets.

    Used by the services and by the console's user form, so a change is recorded however it
    was made.
    """
    role_names = {role.value for role in Role}
    changes = [(name, True) for name in sorted(after - before)] + [
        (name, False) for name in sorted(before - after)
    ]
    for name, added in changes:
        if name in role_names:
            action, detail = ("role.granted" if added else "role.revoked"), "role"
        else:
            action, detail = ("team.member.added" if added else "team.member.removed"), "team"
        audit_event_record(action=action, target=user, metadata={detail: name}, **_system_or(actor))  # type: ignore[arg-type]


@transaction.atomic
def user_roles_set(*, user: User, roles: Iterable[Role], actor: User | None) -> User:
    """Make `user`'s roles exactly `roles`; each role granted or revoked is audited."""
    wanted = {Role(role).value for role in roles}
    current = set(user.groups.filter(name__in=[role.value for role in Role]).values_list("name", flat=True))
    user.groups.add(*Group.objects.filter(name__in=wanted - current))
    user.groups.remove(*Group.objects.filter(name__in=current - wanted))
    group_membership_changes_record(user=user, before=current, after=wanted, actor=actor)
    return user


def sessions_revoke_all(*, user: User, reason: str) -> int:
    """End every login session of `user`; returns how many JWT sessions ended.

    Their refresh and access tokens stop working, and so do console sessions authenticated
    before now (accounts.principal.console_session_check); open websockets on any of them are
    told to re-check and close. API keys are credentials of their own and stay valid.
    """
    now = timezone.now()
    user.tokens_valid_after = now
    user.save(update_fields=["tokens_valid_after"])
    credentials_changed_notify(user_id=user.pk)
    return RefreshFamily.objects.filter(user=user, revoked_at__isnull=True).update(
        revoked_at=now, revoked_reason=reason
    )


@transaction.atomic
def user_password_change_apply(*, user: User) -> int:
    """A new password was saved for `user`: end every session signed in with the old one.

    Called by the model whenever the stored hash is replaced (accounts.models.User.save), so
    every way of setting a password is covered. Whoever was signed in to the console when it
    happened is the audit record's actor, else the system. The console session in which a
    user changed their own password is kept (accounts.middleware renews it); their other
    sessions, JWT sessions included, end. API keys stay valid. Returns how many JWT sessions
    ended.
    """
    ended = sessions_revoke_all(user=user, reason="password_change")
    audit_event_record(
        action="auth.password.changed",
        target=user,
        metadata={"sessions_ended": ended},
        **_system_or(acting_user_current()),  # type: ignore[arg-type]
    )
    return ended


@transaction.atomic
def user_deactivate(*, user: User, actor: User | None, actor_name: str = "") -> User:
    """Disable `user`; every token and key they hold is refused from the next request on.

    `actor_name` names who did it when that is not a user (a provisioning token)."""
    user = User.objects.select_for_update().get(pk=user.pk)
    was_active = user.is_active
    user.is_active = False
    user.save(update_fields=["is_active"])
    ended = sessions_revoke_all(user=user, reason="deactivated")
    audit_event_record(
        action="user.deactivated",
        target=user,
        metadata={
            "before": {"is_active": was_active},
            "after": {"is_active": False},
            "sessions_ended": ended,
        },
        **_system_or(actor, actor_name),  # type: ignore[arg-type]
    )
    return user


@transaction.atomic
def user_activate(*, user: User, actor: User | None, actor_name: str = "") -> User:
    user = User.objects.select_for_update().get(pk=user.pk)
    was_active = user.is_active
    user.is_active = True
    user.save(update_fields=["is_active"])
    audit_event_record(
        action="user.activated",
        target=user,
        metadata={"before": {"is_active": was_active}, "after": {"is_active": True}},
        **_system_or(actor, actor_name),  # type: ignore[arg-type]
    )
    return user


@dataclass(frozen=True)
class AdminEnsured:
    user: User
    created: bool
    # Set only when this call generated the password: shown to the operator once, never stored.
    generated_password: str | None


def admin_ensure(*, username: str, password: str | None) -> AdminEnsured:
    """Make sure the platform admin exists; idempotent.

    An existing admin is left untouched (its password is never reset here). A new one gets
    `password`, which must pass AUTH_PASSWORD_VALIDATORS (else ValidationError, saying which
    rule), or a generated one that the caller must show to the operator exactly once.
    """
    existing = User.objects.filter(username=username).first()
    if existing is not None:
        return AdminEnsured(user=existing, created=False, generated_password=None)
    if password:
        try:
            validate_password(password, user=User(username=username, is_staff=True, is_superuser=True))
        except ValidationError as weak:
            raise ValidationError(
                "The admin password (GATEHOUSE_ADMIN_PASSWORD) fails the password rules: "
                f"{' '.join(weak.messages)} Choose another, or unset it to have one generated.",
                code="admin_password_weak",
            ) from weak
    generated = None if password else secrets.token_urlsafe(16)
    user = user_create(
        username=username,
        password=password or generated,
        roles=[Role.ADMIN],
        is_staff=True,
        is_superuser=True,
    )
    return AdminEnsured(user=user, created=True, generated_password=generated)


@transaction.atomic
def two_factor_enroll(*, user: User, actor: User | None, name: str = "authenticator") -> str:
    """Give `user` a confirmed TOTP device; returns its otpauth:// URL, to show once."""
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.create(user=user, name=name, confirmed=True)
    audit_event_record(
        action="auth.2fa.enrolled",
        target=user,
        metadata={"device": name, "kind": "totp"},
        **_system_or(actor),  # type: ignore[arg-type]
    )
    return str(device.config_url)

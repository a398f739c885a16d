"""Writes for identity: users, role membership and login."""

import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from django.contrib.auth import authenticate
from django.contrib.auth.models import Group, update_last_login
from django.db import transaction
from rest_framework.exceptions import AuthenticationFailed
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.models import User
from accounts.roles import Role
from audit.models import AuditEvent
from audit.services import audit_event_record


@dataclass(frozen=True)
class TokenPair:
    access: str
    refresh: str


def role_groups_ensure() -> list[Group]:
    """Create any missing role group (the data migration does this on a fresh database)."""
    return [Group.objects.get_or_create(name=role.value)[0] for role in Role]


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
) -> User:
    user = User(username=username, email=email, is_staff=is_staff, is_superuser=is_superuser)
    if password is None:
        user.set_unusable_password()
    else:
        user.set_password(password)
    user.full_clean(exclude=["password"])
    user.save()
    role_names = [Role(role).value for role in roles]
    if role_names:
        user.groups.set(Group.objects.filter(name__in=role_names))
    audit_event_record(
        action="user.created",
        actor=created_by,
        actor_kind=None if created_by else AuditEvent.ActorKind.SYSTEM,
        actor_display="" if created_by else "system",
        target=user,
        metadata={"after": {"username": username, "roles": sorted(role_names), "is_staff": is_staff}},
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
    `password`, or a generated one that the caller must show to the operator exactly once.
    """
    existing = User.objects.filter(username=username).first()
    if existing is not None:
        return AdminEnsured(user=existing, created=False, generated_password=None)
    generated = None if password else secrets.token_urlsafe(16)
    user = user_create(
        username=username,
        password=password or generated,
        roles=[Role.ADMIN],
        is_staff=True,
        is_superuser=True,
    )
    return AdminEnsured(user=user, created=True, generated_password=generated)


def auth_tokens_obtain(*, username: str, password: str) -> TokenPair:
    """Exchange a username and password for a JWT pair; every attempt is audited.

    Django's ModelBackend hashes a dummy password for unknown usernames, so the answer
    takes as long whether or not the user exists.
    """
    user = authenticate(username=username, password=password)
    if not isinstance(user, User):
        audit_event_record(
            action="auth.login.failed",
            actor_display=username[:150],
            outcome=AuditEvent.Outcome.FAILURE,
            metadata={"method": "password", "channel": "api"},
        )
        raise AuthenticationFailed("Invalid username or password.", code="invalid_credentials")
    with transaction.atomic():
        refresh = RefreshToken.for_user(user)
        update_last_login(User, user)
        audit_event_record(
            action="auth.login.succeeded",
            actor=user,
            target=user,
            metadata={"method": "password", "channel": "api"},
        )
    return TokenPair(access=str(refresh.access_token), refresh=str(refresh))

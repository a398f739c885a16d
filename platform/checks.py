"""Unsafe defaults: production refuses the placeholder secrets deploy/ ships, and short keys.

Two doors use the same rules. `platform/settings.py` calls `secret_refusals` for the signing
keys, so a process with DEBUG off refuses to load at all (an ASGI server runs no system checks).
`unsafe_defaults_check`, a system check registered by the gatehouse app, also covers the
admin's bootstrap password and the other secrets, so `manage.py check --deploy` (the migrate
step of every deployment) and every management command fail on them too.

Nothing here imports Django at module level: settings import it before Django is set up.
"""

import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from django.core.checks import CheckMessage

# Keys under this many characters cannot be random enough (32 random bytes' worth of text).
MIN_KEY_LENGTH = 32
# What the placeholders in deploy/ (env.example, the Secret templates) are made of.
PLACEHOLDER_MARKERS = ("change-me", "changeme", "replace-me", "placeholder", "example-secret")
# The keys settings check as they load, with DEBUG off.
SIGNING_KEYS = ("SECRET_KEY", "JWT_SIGNING_KEY", "API_KEY_PEPPER")
# Secrets whose placeholder must never run, though their form is checked elsewhere (the audit
# key must decode to 32 bytes; the admin password meets the password validators).
OTHER_SECRETS = (
    "GATEHOUSE_METRICS_TOKEN",
    "GATEHOUSE_AUDIT_SIGNING_KEY",
    "GATEHOUSE_ENCRYPTION_KEYS",
    "GATEHOUSE_ADMIN_PASSWORD",
)


def is_placeholder(value: str) -> bool:
    lowered = value.lower()
    return any(marker in lowered for marker in PLACEHOLDER_MARKERS)


def secret_refusal(*, name: str, value: str, min_length: int | None = MIN_KEY_LENGTH) -> str | None:
    """Why `value` may not be used as `name` in production, in words; None when it may."""
    if is_placeholder(value):
        return (
            f"{name} is still the placeholder shipped in deploy/ ({value[:12]}…): "
            "generate a random value, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(50))'`."
        )
    if min_length is not None and len(value) < min_length:
        return (
            f"{name} is {len(value)} characters long; production keys must be at least "
            f"{min_length} characters of random text."
        )
    return None


def secret_refusals(values: Mapping[str, str]) -> list[str]:
    """The refusals for the signing keys in `values` (name to value)."""
    return [
        refusal
        for name in SIGNING_KEYS
        if (refusal := secret_refusal(name=name, value=values.get(name, ""))) is not None
    ]


def password_login_refusals(*, disabled_roles: Iterable[str], break_glass_users: Iterable[str]) -> list[str]:
    """Why the password-login settings cannot be used, in words; empty when they can.

    A role name that is not one of the five would silently leave its holders with password
    login; a blank break-glass name is a typo.
    """
    from accounts.roles import Role  # plain Python: safe before Django is set up

    known = [role.value for role in Role]
    refusals = [
        f"GATEHOUSE_PASSWORD_LOGIN_DISABLED_ROLES: {name!r} is not a role; the roles are {', '.join(known)}."
        for name in disabled_roles
        if name not in known
    ]
    if any(not name.strip() for name in break_glass_users):
        refusals.append("GATEHOUSE_BREAK_GLASS_USERS has an empty name; list usernames separated by commas.")
    return refusals


def unsafe_defaults_check(app_configs: Iterable[Any] | None = None, **kwargs: Any) -> list["CheckMessage"]:
    """System check (gatehouse.E001-E003): with DEBUG off, no placeholder or short secret."""
    from django.conf import settings
    from django.contrib.auth.password_validation import validate_password
    from django.core.checks import Error
    from django.core.exceptions import ValidationError

    if settings.DEBUG:
        return []
    errors: list[CheckMessage] = []
    for name in SIGNING_KEYS:
        refusal = secret_refusal(name=name, value=str(getattr(settings, name, "")))
        if refusal:
            errors.append(Error(refusal, hint="Set a random value in the environment.", id="gatehouse.E001"))
    for name in OTHER_SECRETS:
        value = os.environ.get(name, "") or str(getattr(settings, name, "") or "")
        if value and is_placeholder(value):
            refusal = secret_refusal(name=name, value=value, min_length=None)
            errors.append(Error(str(refusal), hint="Set a real value or unset it.", id="gatehouse.E002"))
    password = os.environ.get("GATEHOUSE_ADMIN_PASSWORD", "")
    if password and not is_placeholder(password):
        try:
            validate_password(password)
        except ValidationError as weak:
            errors.append(
                Error(
                    f"GATEHOUSE_ADMIN_PASSWORD fails the password rules: {' '.join(weak.messages)}",
                    hint="Choose a longer, uncommon password, or unset it to have one generated.",
                    id="gatehouse.E003",
                )
            )
    return errors

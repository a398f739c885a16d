"""Upstream API keys: environment variables named GATEHOUSE_UPSTREAM_*, referred to by name.

A remote version stores the *name* of the variable holding its key. Only names with this
prefix may be referred to, so a version can never make the server send another of its
secrets (SECRET_KEY, JWT_SIGNING_KEY, DATABASE_URL, ...) to an upstream. The rule is checked
when a version is registered and again before a key is read.
"""

import os
import re

UPSTREAM_CREDENTIAL_PREFIX = "GATEHOUSE_UPSTREAM_"
_NAME = re.compile(rf"^{UPSTREAM_CREDENTIAL_PREFIX}[A-Z0-9_]+$")


class UpstreamCredentialRefused(ValueError):
    """The name is not one a version may refer to; the message states the rule."""


def upstream_credential_check(*, name: str) -> None:
    """Raise UpstreamCredentialRefused unless `name` may name an upstream's key."""
    if not _NAME.fullmatch(name):
        raise UpstreamCredentialRefused(
            f"{name!r} may not be used as an upstream credential: only environment variables "
            f"named {UPSTREAM_CREDENTIAL_PREFIX}<NAME> (capitals, digits, underscores) may be."
        )


def upstream_credential_names() -> list[str]:
    """The names of the upstream credentials set in this process's environment (never values)."""
    return sorted(name for name, value in os.environ.items() if value and _NAME.fullmatch(name))


def upstream_credential_read(*, name: str) -> str | None:
    """The key stored under `name` (None when unset); refuses any name outside the prefix."""
    upstream_credential_check(name=name)
    return os.environ.get(name) or None

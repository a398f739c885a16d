"""Upstream API keys: environment variables named GATEHOUSE_UPSTREAM_*, referred to by name.

A remote version's deployment stores the *name* of the variable holding its key; the rule and
the reading are `gatehouse.named_secrets`'. The name is checked when a version is registered
and again before a key is read.
"""

from gatehouse.named_secrets import NamedSecretRefused, SecretFamily

UPSTREAM_CREDENTIAL_PREFIX = "GATEHOUSE_UPSTREAM_"


class UpstreamCredentialRefused(NamedSecretRefused):
    """The name is not one a version may refer to; the message states the rule."""


_CREDENTIALS = SecretFamily(
    prefix=UPSTREAM_CREDENTIAL_PREFIX, what="an upstream credential", refused=UpstreamCredentialRefused
)


def upstream_credential_check(*, name: str) -> None:
    """Raise UpstreamCredentialRefused unless `name` may name an upstream's key."""
    _CREDENTIALS.check(name=name)


def upstream_credential_names() -> list[str]:
    """The names of the upstream credentials set in this process's environment (never values)."""
    return _CREDENTIALS.names()


def upstream_credential_read(*, name: str) -> str | None:
    """The key stored under `name` (None when unset); refuses any name outside the prefix."""
    return _CREDENTIALS.read(name=name)

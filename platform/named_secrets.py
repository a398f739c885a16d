"""Secrets that stored rows refer to by name: environment variables under one allow-listed prefix.

A row (a remote version's deployment, a webhook) keeps the *name* of the variable that holds its
secret, never the value. Each family of such names has its own prefix, and nothing outside it
may be named: a row can never make the server send or sign with another of its secrets
(SECRET_KEY, JWT_SIGNING_KEY, DATABASE_URL, ...). This module is the one place that checks such
a name and reads what is under it; `inference.upstream_credentials` and `spend.webhook_secrets`
are its two families.
"""

import os
import re
from dataclasses import dataclass, field


class NamedSecretRefused(ValueError):
    """The name is not one this family may refer to; the message states the rule."""


@dataclass(frozen=True)
class SecretFamily:
    """The names under `prefix`: capitals, digits and underscores after it."""

    prefix: str
    # How the refusal names what the secret is for ("an upstream credential").
    what: str
    # The refusal raised: a subclass of NamedSecretRefused, so each family's callers catch theirs.
    refused: type[NamedSecretRefused] = NamedSecretRefused
    _pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_pattern", re.compile(rf"{re.escape(self.prefix)}[A-Z0-9_]+"))

    def check(self, *, name: str) -> None:
        """Raise `refused` unless `name` is one of this family's."""
        if not self._pattern.fullmatch(name):
            raise self.refused(
                f"{name!r} may not be used as {self.what}: only environment variables named "
                f"{self.prefix}<NAME> (capitals, digits, underscores) may be."
            )

    def names(self) -> list[str]:
        """This family's names set (not empty) in this process's environment; never values."""
        return sorted(name for name, value in os.environ.items() if value and self._pattern.fullmatch(name))

    def read(self, *, name: str) -> str | None:
        """The value under `name`, None when unset or empty; `refused` for a name not the family's."""
        self.check(name=name)
        return os.environ.get(name) or None

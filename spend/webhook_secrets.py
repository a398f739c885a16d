"""Webhook signing keys: environment variables named GATEHOUSE_WEBHOOK_*, referred to by name.

A webhook stores the *name* of the variable holding its key; only names with this prefix may
be referred to, so a webhook can never make the server sign with (or leak) another secret.
"""

import os
import re

WEBHOOK_SECRET_PREFIX = "GATEHOUSE_WEBHOOK_"  # noqa: S105 - the names' prefix, not a secret
_NAME = re.compile(rf"^{WEBHOOK_SECRET_PREFIX}[A-Z0-9_]+$")


class WebhookSecretRefused(ValueError):
    """The name is not one a webhook may refer to, or nothing is set under it."""


def webhook_secret_read(*, name: str) -> bytes:
    """The signing key under `name`; WebhookSecretRefused for a name outside the prefix, or unset."""
    if not _NAME.fullmatch(name):
        raise WebhookSecretRefused(
            f"{name!r} may not name a webhook's signing key: only environment variables named "
            f"{WEBHOOK_SECRET_PREFIX}<NAME> (capitals, digits, underscores) may."
        )
    value = os.environ.get(name)
    if not value:
        raise WebhookSecretRefused(f"{name} is not set in this server's environment.")
    return value.encode()

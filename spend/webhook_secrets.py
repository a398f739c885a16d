"""Webhook signing keys: environment variables named GATEHOUSE_WEBHOOK_*, referred to by name.

A webhook stores the *name* of the variable holding its key; the rule and the reading are
`gatehouse.named_secrets`', so a webhook can never make the server sign with (or leak)
another secret.
"""

from gatehouse.named_secrets import NamedSecretRefused, SecretFamily

WEBHOOK_SECRET_PREFIX = "GATEHOUSE_WEBHOOK_"  # noqa: S105 - the names' prefix, not a secret


class WebhookSecretRefused(NamedSecretRefused):
    """The name is not one a webhook may refer to, or nothing is set under it."""


_SIGNING_KEYS = SecretFamily(
    prefix=WEBHOOK_SECRET_PREFIX, what="a webhook's signing key", refused=WebhookSecretRefused
)


def webhook_secret_read(*, name: str) -> bytes:
    """The signing key under `name`; WebhookSecretRefused for a name outside the prefix, or unset."""
    value = _SIGNING_KEYS.read(name=name)
    if value is None:
        raise WebhookSecretRefused(f"{name} is not set in this server's environment.")
    return value.encode()

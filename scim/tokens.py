"""SCIM token material: `scim_<prefix>_<secret>`, made and hashed like an API key.

The prefix finds the row; the secret (192 random bits) is stored only as an HMAC under the
API key pepper (`accounts.key_material`, whose helpers these are). A SCIM token is not an API
key: its scheme differs, so the API's authentication never takes it for one, and this app's
never takes an API key or a JWT for a SCIM token.
"""

from accounts.key_material import (
    KEY_SCHEME,
    SecretMatch,
    api_key_material_new,
    api_key_parse,
    api_key_secret_hash,
    api_key_secret_match,
)
from scim.models import TOKEN_SCHEME

# Compared against when no token has the prefix, so unknown and wrong tokens cost the same.
_ABSENT_TOKEN_HASH = api_key_secret_hash("absent")


def scim_token_material_new() -> tuple[str, str]:
    """A fresh (prefix, secret) pair."""
    return api_key_material_new()


def scim_token_format(*, prefix: str, secret: str) -> str:
    return f"{TOKEN_SCHEME}{prefix}_{secret}"


def scim_token_parse(raw: str) -> tuple[str, str] | None:
    """(prefix, secret) of a well-formed SCIM token, else None (an API key or a JWT included)."""
    if not raw.startswith(TOKEN_SCHEME):
        return None
    # The same shape as an API key's after the scheme: checked by the same parser.
    return api_key_parse(KEY_SCHEME + raw[len(TOKEN_SCHEME) :])


def scim_token_secret_hash(secret: str) -> str:
    return api_key_secret_hash(secret)


def scim_token_secret_matches(*, secret: str, expected_hash: str | None) -> bool:
    """Whether `secret` is the one hashed (under the current pepper or a retired one)."""
    match = api_key_secret_match(secret=secret, expected_hash=expected_hash or _ABSENT_TOKEN_HASH)
    return expected_hash is not None and match is not SecretMatch.NONE

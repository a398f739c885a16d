"""API key format and hashing: `gk_<prefix>_<secret>`.

The prefix (public, 10 characters) finds the row; the secret (192 random bits from the
OS CSPRNG) is stored only as HMAC-SHA256 under a server-side pepper, so a database leak
alone does not yield usable keys.
"""

import enum
import hashlib
import hmac
import secrets
import string

from django.conf import settings

KEY_SCHEME = "gk_"
PREFIX_LENGTH = 10
_PREFIX_ALPHABET = string.ascii_lowercase + string.digits
_SECRET_BYTES = 24
# Far above a real secret (32 characters); longer input is refused before any hashing.
MAX_SECRET_CHARS = 128


def api_key_material_new() -> tuple[str, str]:
    """A fresh (prefix, secret) pair."""
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))
    return prefix, secrets.token_urlsafe(_SECRET_BYTES)


def api_key_format(*, prefix: str, secret: str) -> str:
    return f"{KEY_SCHEME}{prefix}_{secret}"


def api_key_parse(raw: str) -> tuple[str, str] | None:
    """(prefix, secret) of a well-formed key, else None."""
    if not raw.startswith(KEY_SCHEME):
        return None
    prefix, separator, secret = raw[len(KEY_SCHEME) :].partition("_")
    if not separator or len(prefix) != PREFIX_LENGTH or not secret or len(secret) > MAX_SECRET_CHARS:
        return None
    if any(char not in _PREFIX_ALPHABET for char in prefix):
        return None
    return prefix, secret


def api_key_secret_hash(secret: str, *, pepper: str | None = None) -> str:
    """The stored form of a secret: HMAC-SHA256 under the current pepper (or the one given)."""
    key = settings.API_KEY_PEPPER if pepper is None else pepper
    return hmac.new(key.encode(), secret.encode(), hashlib.sha256).hexdigest()


class SecretMatch(enum.Enum):
    CURRENT = "current"
    # Hashed under a pepper in API_KEY_PEPPER_FALLBACKS: valid, and due for a re-hash.
    FALLBACK = "fallback"
    NONE = "none"


def api_key_secret_match(*, secret: str, expected_hash: str) -> SecretMatch:
    if hmac.compare_digest(api_key_secret_hash(secret), expected_hash):
        return SecretMatch.CURRENT
    for pepper in settings.API_KEY_PEPPER_FALLBACKS:
        if hmac.compare_digest(api_key_secret_hash(secret, pepper=pepper), expected_hash):
            return SecretMatch.FALLBACK
    return SecretMatch.NONE

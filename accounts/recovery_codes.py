"""Recovery codes: their form, and the only form in which they are kept.

A code is ten characters from an alphabet without look-alikes (no 0/o, 1/l/i), shown as
`abcde-23456`: about 49 random bits from the OS CSPRNG. Only an HMAC-SHA256 of it is
stored, under the server-side pepper that API key secrets use (API_KEY_PEPPER, its
fallbacks still accepted), with a label of its own so the two kinds of hash never meet.
A code is high-entropy, so a keyed hash needs no slow password hashing, and a leaked
table alone yields no usable code.
"""

import hashlib
import hmac
import re
import secrets

from django.conf import settings

RECOVERY_CODE_COUNT = 10
RECOVERY_CODE_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
_HALF = 5
# How a recovery code may be typed: either half case-insensitively, joined by a hyphen, a
# space or nothing. A TOTP code (6 to 8 digits) never has this shape.
RECOVERY_CODE_TYPED = r"[A-Za-z0-9]{5}[- ]?[A-Za-z0-9]{5}"
_TYPED = re.compile(RECOVERY_CODE_TYPED)
_DOMAIN = b"gatehouse recovery code\x00"


def recovery_code_new() -> str:
    """A fresh code as shown to its owner, `abcde-23456`."""
    chars = "".join(secrets.choice(RECOVERY_CODE_ALPHABET) for _ in range(2 * _HALF))
    return f"{chars[:_HALF]}-{chars[_HALF:]}"


def recovery_code_normalise(raw: str) -> str | None:
    """The code's ten characters, lower-cased, or None when `raw` cannot be a recovery code."""
    if not _TYPED.fullmatch(raw.strip()):
        return None
    chars = raw.strip().replace("-", "").replace(" ", "").lower()
    if any(char not in RECOVERY_CODE_ALPHABET for char in chars):
        return None
    return chars


def recovery_code_hash(code: str, *, pepper: str | None = None) -> str:
    """The stored form of a normalised code, under the current pepper (or the one given)."""
    key = settings.API_KEY_PEPPER if pepper is None else pepper
    return hmac.new(key.encode(), _DOMAIN + code.encode(), hashlib.sha256).hexdigest()


def recovery_code_candidates(raw: str) -> list[str]:
    """Every stored form `raw` may have (current pepper first); empty when it is no code."""
    code = recovery_code_normalise(raw)
    if code is None:
        return []
    peppers = [settings.API_KEY_PEPPER, *settings.API_KEY_PEPPER_FALLBACKS]
    return [recovery_code_hash(code, pepper=pepper) for pepper in peppers]

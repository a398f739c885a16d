"""Enrolment tokens: how someone who must have a second factor, and has none, gets one.

The login policy issues one after a right password (accounts.services.login): the API answers
403 `otp_enrolment_required` with it, the console keeps it in the session. It opens only the
enrolment endpoints (accounts.authentication.EnrolmentTokenAuthentication) and the console's
enrolment page, for ENROLMENT_TOKEN_TTL_SECONDS, and is used up by the confirmation that
enrols the authenticator: single use, like a websocket ticket (accounts.tickets). Only its
SHA-256 names the cache entry, and redemption relies on the cache's delete reporting whether
it removed the key, so of two racing confirmations exactly one redeems it. It is refused once
the person is enrolled, deactivated, or their sessions were ended after it was issued.
"""

import hashlib
import secrets

from django.core.cache import cache
from django.utils import timezone

from accounts.models import User
from accounts.two_factor import two_factor_enrolled

ENROLMENT_TOKEN_PREFIX = "enrol_"  # noqa: S105 - the scheme of every token, not a secret
ENROLMENT_TOKEN_TTL_SECONDS = 600
_MAX_TOKEN_CHARS = 128


def _key(token: str) -> str:
    return "2fa-enrolment:" + hashlib.sha256(token.encode()).hexdigest()


def enrolment_token_issue(*, user: User) -> str:
    """A fresh token that lets `user` enrol a second factor, and nothing else."""
    token = ENROLMENT_TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = timezone.now().timestamp()
    cache.set(
        _key(token),
        {"user_id": user.pk, "issued_at": now, "expires_at": now + ENROLMENT_TOKEN_TTL_SECONDS},
        timeout=ENROLMENT_TOKEN_TTL_SECONDS,
    )
    return token


def enrolment_token_user(*, token: str) -> User | None:
    """Whom a valid, unused, unexpired token stands for; None otherwise. Does not use it up."""
    if not token.startswith(ENROLMENT_TOKEN_PREFIX) or len(token) > _MAX_TOKEN_CHARS:
        return None
    payload = cache.get(_key(token))
    issued_at = _issued_at(payload)
    if issued_at is None:
        return None
    user: User | None = User.objects.filter(pk=payload.get("user_id"), is_active=True).first()
    if user is None or two_factor_enrolled(user):
        return None
    # Logout everywhere, a password change or deactivation since it was issued ends it too.
    if user.tokens_valid_after is not None and user.tokens_valid_after.timestamp() > issued_at:
        return None
    return user


def _issued_at(payload: object) -> float | None:
    """When a cached token was issued, if it is well-formed and not past its lifetime."""
    if not isinstance(payload, dict):
        return None
    expires_at, issued_at = payload.get("expires_at"), payload.get("issued_at")
    if not isinstance(expires_at, int | float) or not isinstance(issued_at, int | float):
        return None
    if timezone.now().timestamp() >= expires_at:
        return None
    return float(issued_at)


def enrolment_token_redeem(*, token: str) -> bool:
    """Use the token up; True for exactly one caller, and only while it is valid."""
    if enrolment_token_user(token=token) is None:
        return False
    return bool(cache.delete(_key(token)))

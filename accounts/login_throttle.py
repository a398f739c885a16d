"""Failed-login throttling per account and per client IP, with lockouts that expire.

Counters live in the cache (Redis in production, so every replica sees the same
counts). A lockout blocks further attempts, right or wrong, until it expires; a
successful login clears the account's counter.
"""

import hashlib
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache


@dataclass(frozen=True)
class Lockout:
    scope: str  # "account" or "ip"
    retry_after_seconds: int


def _subject(scope: str, value: str) -> str:
    # Hashed so usernames and addresses are not cache keys in clear.
    return f"{scope}:{hashlib.sha256(value.lower().encode()).hexdigest()[:32]}"


def _subjects(*, username: str, client_ip: str | None) -> list[tuple[str, str, int]]:
    subjects = [("account", _subject("account", username), settings.GATEHOUSE_LOGIN_MAX_FAILURES_PER_ACCOUNT)]
    if client_ip:
        subjects.append(("ip", _subject("ip", client_ip), settings.GATEHOUSE_LOGIN_MAX_FAILURES_PER_IP))
    return subjects


def login_lockout_current(*, username: str, client_ip: str | None) -> Lockout | None:
    now = time.time()
    for scope, subject, _limit in _subjects(username=username, client_ip=client_ip):
        until = cache.get(f"login-lock:{subject}")
        if until is not None and until > now:
            return Lockout(scope=scope, retry_after_seconds=max(1, int(until - now) + 1))
    return None


def login_failure_record(*, username: str, client_ip: str | None) -> Lockout | None:
    """Count one failure; return the lockout it triggered, if it reached a limit."""
    window = settings.GATEHOUSE_LOGIN_FAILURE_WINDOW_SECONDS
    lockout_seconds = settings.GATEHOUSE_LOGIN_LOCKOUT_SECONDS
    triggered = None
    for scope, subject, limit in _subjects(username=username, client_ip=client_ip):
        counter = f"login-failures:{subject}"
        cache.add(counter, 0, timeout=window)
        try:
            failures = cache.incr(counter)
        except ValueError:  # expired between add and incr
            cache.set(counter, 1, timeout=window)
            failures = 1
        if failures >= limit:
            cache.set(f"login-lock:{subject}", time.time() + lockout_seconds, timeout=lockout_seconds)
            cache.delete(counter)
            triggered = triggered or Lockout(scope=scope, retry_after_seconds=lockout_seconds)
    return triggered


def login_failures_clear(*, username: str) -> None:
    cache.delete(f"login-failures:{_subject('account', username)}")

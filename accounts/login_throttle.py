"""Login throttling: an attempt counts as it starts, and lockouts expire.

Three counters per attempt, in the cache (Redis in production, so every replica sees the
same counts), each with its limit within GATEHOUSE_LOGIN_FAILURE_WINDOW_SECONDS:

- account-address, one account from one client address (GATEHOUSE_LOGIN_MAX_FAILURES_PER_ACCOUNT):
  whoever guesses at an account locks it at their own address only, so its owner elsewhere can
  still log in;
- address, any account from one client address (GATEHOUSE_LOGIN_MAX_FAILURES_PER_IP);
- account, one account from anywhere (GATEHOUSE_LOGIN_MAX_FAILURES_PER_ACCOUNT_GLOBAL): a
  ceiling, far above the first, for guesses spread over many addresses.

An attempt takes a slot in each counter (an atomic increment) before the password is checked,
so parallel guesses are counted while in flight, not when their slow hash ends; an attempt
that would go past a limit gives its slots back and is refused unchecked. A failed attempt
keeps its slots, and the one that fills a counter locks that subject for
GATEHOUSE_LOGIN_LOCKOUT_SECONDS: every attempt, right or wrong, is refused until it expires.
A successful attempt clears its account-address counter and gives back its other slots, as
does an attempt that ended without a verdict (an error, a refusal that is not a wrong guess).
"""

import contextlib
import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from django.conf import settings
from django.core.cache import cache

LockoutScope = Literal["account-address", "address", "account"]

# Retry-After for an attempt refused because the counter is full of guesses still in flight:
# they end within moments, and then either a lockout starts or the counter has room again.
IN_FLIGHT_RETRY_SECONDS = 5


@dataclass(frozen=True)
class _Subject:
    scope: LockoutScope
    digest: str  # hashed, so usernames and addresses are not cache keys in clear
    limit: int

    @property
    def counter_key(self) -> str:
        return f"login-attempts:{self.scope}:{self.digest}"

    @property
    def lock_key(self) -> str:
        return f"login-lock:{self.scope}:{self.digest}"

    @property
    def noted_key(self) -> str:
        return f"login-blocked:{self.scope}:{self.digest}"


@dataclass(frozen=True)
class Lockout:
    scope: LockoutScope
    retry_after_seconds: int
    # The first refusal of this lockout: the one the audit trail records (later ones are
    # only counted), so a flood of refused attempts cannot grow the trail.
    first_refusal: bool = False


@dataclass(frozen=True)
class LoginAttempt:
    """The slots an attempt holds while it is checked, or the lockout that refused it."""

    subjects: tuple[_Subject, ...]
    lockout: Lockout | None = None


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def _subjects(*, username: str, client_ip: str | None) -> tuple[_Subject, ...]:
    account = username.lower()
    pair = _Subject(
        scope="account-address",
        digest=_digest(f"account-address:{account}\n{client_ip or 'unknown'}"),
        limit=settings.GATEHOUSE_LOGIN_MAX_FAILURES_PER_ACCOUNT,
    )
    everywhere = _Subject(
        scope="account",
        digest=_digest(f"account:{account}"),
        limit=settings.GATEHOUSE_LOGIN_MAX_FAILURES_PER_ACCOUNT_GLOBAL,
    )
    if not client_ip:
        return (pair, everywhere)
    address = _Subject(
        scope="address",
        digest=_digest(f"address:{client_ip}"),
        limit=settings.GATEHOUSE_LOGIN_MAX_FAILURES_PER_IP,
    )
    return (pair, address, everywhere)


def _lock_current(subjects: Iterable[_Subject]) -> Lockout | None:
    subjects = tuple(subjects)
    locks = cache.get_many([subject.lock_key for subject in subjects])
    now = time.time()
    for subject in subjects:
        until = locks.get(subject.lock_key)
        if until is not None and until > now:
            return Lockout(scope=subject.scope, retry_after_seconds=max(1, int(until - now) + 1))
    return None


def _increment(key: str) -> int:
    window = settings.GATEHOUSE_LOGIN_FAILURE_WINDOW_SECONDS
    while True:
        cache.add(key, 0, timeout=window)
        try:
            count = int(cache.incr(key))
        except ValueError:  # the window ended between add and incr: start the next one
            continue
        if count == 1:
            # A new window. Redis's INCR on a key that expired a moment earlier would have
            # made one that never expires; this gives it the window's lifetime either way.
            cache.touch(key, timeout=window)
        return count


def _give_back(subjects: Iterable[_Subject]) -> None:
    for subject in subjects:
        # ValueError: the window ended, or a lockout or a success cleared the counter.
        with contextlib.suppress(ValueError):
            cache.decr(subject.counter_key)


def _add_until(key: str, *, seconds: int) -> bool:
    """Set `key` to the time it lapses, unless it holds one still to come; True when set.

    The stored time, not only the cache's expiry, decides: both agree in production, and a
    key whose time has passed is treated as gone even while the cache still holds it.
    """
    until = time.time() + seconds
    if cache.add(key, until, timeout=seconds):
        return True
    held = cache.get(key)
    if isinstance(held, int | float) and held > time.time():
        return False
    cache.set(key, until, timeout=seconds)
    return True


def _noted(lockout: Lockout, subjects: tuple[_Subject, ...], *, for_seconds: int) -> Lockout:
    """The lockout, marked as its first refusal if none was noted in the last `for_seconds`."""
    subject = next(s for s in subjects if s.scope == lockout.scope)
    first = _add_until(subject.noted_key, seconds=for_seconds)
    return Lockout(scope=lockout.scope, retry_after_seconds=lockout.retry_after_seconds, first_refusal=first)


def login_attempt_reserve(*, username: str, client_ip: str | None) -> LoginAttempt:
    """Take this attempt's slot in each counter, or say which lockout refuses it.

    Every slot is taken before the password is checked. The lock is looked at again once
    they are held: one set meanwhile by a guess that was in flight refuses this attempt too.
    """
    subjects = _subjects(username=username, client_ip=client_ip)
    lockout = _lock_current(subjects)
    if lockout is not None:
        # Noted until the lockout ends: its next refusals are only counted.
        noted = _noted(lockout, subjects, for_seconds=lockout.retry_after_seconds)
        return LoginAttempt(subjects=(), lockout=noted)
    held: list[_Subject] = []
    for subject in subjects:
        held.append(subject)
        if _increment(subject.counter_key) > subject.limit:
            # Full of failures and guesses in flight: those decide, within a moment, whether it
            # locks. Noted for as long as the lockout they would set (which extends the note).
            _give_back(held)
            lockout = Lockout(scope=subject.scope, retry_after_seconds=IN_FLIGHT_RETRY_SECONDS)
            noted = _noted(lockout, subjects, for_seconds=settings.GATEHOUSE_LOGIN_LOCKOUT_SECONDS)
            return LoginAttempt(subjects=(), lockout=noted)
    lockout = _lock_current(subjects)
    if lockout is not None:
        _give_back(held)
        noted = _noted(lockout, subjects, for_seconds=lockout.retry_after_seconds)
        return LoginAttempt(subjects=(), lockout=noted)
    return LoginAttempt(subjects=subjects)


def login_attempt_fail(*, attempt: LoginAttempt) -> Lockout | None:
    """A wrong guess: its slots stay counted. Returns the lockout it set, if it filled a counter."""
    lockout_seconds = settings.GATEHOUSE_LOGIN_LOCKOUT_SECONDS
    triggered = None
    for subject in attempt.subjects:
        count = cache.get(subject.counter_key)
        if count is None or count < subject.limit:
            continue
        if _add_until(subject.lock_key, seconds=lockout_seconds):
            cache.delete(subject.counter_key)
            # A refusal noted while guesses in flight were filling the counter belongs to
            # this lockout: it is not recorded again before the lockout ends.
            noted_until = cache.get(subject.noted_key)
            if isinstance(noted_until, int | float) and noted_until > time.time():
                cache.set(subject.noted_key, time.time() + lockout_seconds, timeout=lockout_seconds)
            triggered = triggered or Lockout(scope=subject.scope, retry_after_seconds=lockout_seconds)
    return triggered


def login_attempt_succeed(*, attempt: LoginAttempt) -> None:
    """A login that passed: its account-address counter starts over, its other slots go back."""
    for subject in attempt.subjects:
        if subject.scope == "account-address":
            cache.delete(subject.counter_key)
    _give_back(subject for subject in attempt.subjects if subject.scope != "account-address")


def login_attempt_release(*, attempt: LoginAttempt) -> None:
    """An attempt that ended without a verdict on the guess: all its slots go back."""
    _give_back(attempt.subjects)

"""One login policy for both doors: the token endpoint of the API and the console's login form.

In order: the attempt takes its slot in the lockout counters (accounts.login_throttle: per
account and client address, per address, per account) and a lockout refuses it before the
password is looked at; then the password; then whether this account may log in with a password
at all (accounts.password_login); then the second factor: anyone with a confirmed second
factor must send a one-time code or a recovery code, each good once, and someone who must
have one (accounts.two_factor.two_factor_required) and has none is refused with an enrolment
token (accounts.enrolment_tokens). Every refusal is audited, with the reason for
auditors, except that a lockout's refusals are audited once (and all counted in a metric);
the caller gets only one message for a wrong password, a missing code and a wrong code, so
the answer never says which of them was right. Wrong passwords and wrong or missing codes
count toward the lockout; a login that passes clears its account-and-address counter. The
refusals that follow a right password (no password login, enrolment required) say so, as
they are only told to whoever knows the password, and count neither way.

The counting, the failures' audit and the lockout's (the metric, `auth.login.blocked` on a
lockout's first refusal, `auth.login.locked` when a failure sets one off) are all
`login_attempt_check`, which single sign-on's code check (sso.services) goes through as well,
under the same counters: whichever door a login comes through, its lockout is on the trail.
"""

from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar

from django.contrib.auth import authenticate
from django_otp.models import Device

from accounts.enrolment_tokens import ENROLMENT_TOKEN_TTL_SECONDS, enrolment_token_issue
from accounts.login_throttle import (
    Lockout,
    login_attempt_fail,
    login_attempt_release,
    login_attempt_reserve,
    login_attempt_succeed,
)
from accounts.models import User
from accounts.password_login import password_login_allowed
from accounts.two_factor import two_factor_enrolled, two_factor_required, two_factor_verify
from audit.models import AuditEvent
from audit.services import audit_event_record
from gatehouse.metrics import LOGINS_BLOCKED

_T = TypeVar("_T")

LoginChannel = Literal["api", "console"]
LoginRefusalCode = Literal[
    "invalid_credentials", "locked", "otp_enrolment_required", "password_login_disabled"
]

LOGIN_INVALID_MESSAGE = "Invalid username, password or one-time code."
LOGIN_LOCKED_MESSAGE = "Too many failed logins; try again later."
LOGIN_ENROLMENT_REQUIRED_MESSAGE = (
    "A second factor is required for this account and it has none yet. Enrol an authenticator "
    f"within {ENROLMENT_TOKEN_TTL_SECONDS // 60} minutes: with the enrolment token of this answer "
    "(POST /api/auth/2fa/totp/, then /api/auth/2fa/totp/confirm/), or on the console's login page."
)
LOGIN_PASSWORD_DISABLED_MESSAGE = (
    "Password login is turned off for this account. Sign in with single sign-on instead."  # noqa: S105
)


class LoginRefused(Exception):
    """A login that did not pass; `code` and `message` are safe to show, `retry_after` is seconds."""

    def __init__(
        self,
        *,
        code: LoginRefusalCode,
        message: str,
        retry_after: int | None = None,
        enrolment_token: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code: LoginRefusalCode = code
        self.message = message
        self.retry_after = retry_after
        # With `otp_enrolment_required`: the token that opens the enrolment endpoints only.
        self.enrolment_token = enrolment_token


def login_attempt_subject(*, username: str) -> dict[str, Any]:
    """Audit fields for a failed or blocked login: the account it claimed, when there is one.

    The claimed account is the row's subject, as unauthenticated actor and as target, so its
    pseudonym and key cover the row's name, address and agent: erasing the account reaches
    them. A bare username in the row could never be erased. An unknown username names nobody
    registered and is kept as typed.
    """
    account = User.objects.filter(username=username).first()
    if account is None:
        return {"actor_display": username[:150]}
    return {"actor": account, "actor_kind": AuditEvent.ActorKind.ANONYMOUS, "target": account}


class LoginGuessWrong(Exception):
    """A wrong password, or a missing or wrong one-time code: raised by the check that
    `login_attempt_check` runs. `reason` is for auditors; once the guess is counted,
    `lockout` is the lockout it set off by filling a counter, if it did (already audited)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.lockout: Lockout | None = None


class LoginLockedOut(Exception):
    """A login attempt refused by a lockout before anything of it was checked (already counted
    and audited)."""

    def __init__(self, lockout: Lockout) -> None:
        super().__init__(lockout.scope)
        self.lockout = lockout


def login_attempt_check(
    *,
    username: str,
    client_ip: str | None,
    check: Callable[[], _T],
    audit_metadata: Mapping[str, Any],
) -> _T:
    """Run `check` as one login attempt at `username` under the lockout counters; returns its result.

    The attempt takes its slots (accounts.login_throttle) before `check` runs, and a result
    clears its account-and-address counter. `audit_metadata` says how the login came (at least
    `method` and `channel`) on every audit row the attempt writes. Failure modes, each left to
    the caller to answer as its door does, with everything the policy records already recorded:

    - a lockout refuses the attempt: it is counted in `gatehouse_logins_blocked_total`, the
      lockout's first refusal is audited (`auth.login.blocked`), `LoginLockedOut` is raised
      and `check` never runs;
    - `check` raises `LoginGuessWrong`: the guess keeps its slots (counted first, so it stays
      counted even if the audit write fails), `auth.login.failed` is audited with the guess's
      reason, then `auth.login.locked` if the guess set off a lockout, and the same exception
      is raised again with `lockout` set to that lockout;
    - `check` raises anything else (an error, a refusal that is no guess): the slots go back
      and the exception propagates.
    """
    attempt = login_attempt_reserve(username=username, client_ip=client_ip)
    if attempt.lockout is not None:
        _blocked_record(lockout=attempt.lockout, username=username, audit_metadata=audit_metadata)
        raise LoginLockedOut(attempt.lockout)
    try:
        result = check()
    except LoginGuessWrong as wrong:
        wrong.lockout = login_attempt_fail(attempt=attempt)
        _failure_record(wrong=wrong, username=username, audit_metadata=audit_metadata)
        raise
    except BaseException:
        # No verdict on the guess (an error, or a right password that may not log in yet).
        login_attempt_release(attempt=attempt)
        raise
    login_attempt_succeed(attempt=attempt)
    return result


def _blocked_record(*, lockout: Lockout, username: str, audit_metadata: Mapping[str, Any]) -> None:
    """Count a refusal by a lockout, and audit it when it is the lockout's first."""
    LOGINS_BLOCKED.labels(scope=lockout.scope).inc()
    if lockout.first_refusal:
        audit_event_record(
            action="auth.login.blocked",
            **login_attempt_subject(username=username),
            outcome=AuditEvent.Outcome.DENIED,
            metadata={
                **audit_metadata,
                "lockout": lockout.scope,
                "retry_after": lockout.retry_after_seconds,
            },
        )


def _failure_record(*, wrong: LoginGuessWrong, username: str, audit_metadata: Mapping[str, Any]) -> None:
    """Audit a counted wrong guess, and the lockout it set off, if any."""
    subject = login_attempt_subject(username=username)
    audit_event_record(
        action="auth.login.failed",
        **subject,
        outcome=AuditEvent.Outcome.FAILURE,
        metadata={**audit_metadata, "reason": wrong.reason},
    )
    if wrong.lockout is not None:
        audit_event_record(
            action="auth.login.locked",
            **subject,
            outcome=AuditEvent.Outcome.DENIED,
            metadata={
                **audit_metadata,
                "lockout": wrong.lockout.scope,
                "seconds": wrong.lockout.retry_after_seconds,
            },
        )


def login_authenticate(
    *, username: str, password: str, otp: str | None, client_ip: str | None, channel: LoginChannel
) -> User:
    """Check a login against the policy; returns the user, or raises `LoginRefused`.

    The returned user carries `otp_device`: the authenticator that accepted the code, or None
    (django-otp marks a console session verified from it; accounts.two_factor.two_factor_method
    says whether it was a recovery code). Django's ModelBackend hashes a
    dummy password for unknown usernames, so the answer takes as long either way. Success is
    audited by the caller, which knows what the login opened (a session, a console visit).
    """
    try:
        user, device = login_attempt_check(
            username=username,
            client_ip=client_ip,
            check=lambda: _credentials_check(username=username, password=password, otp=otp, channel=channel),
            audit_metadata={"method": "password", "channel": channel},
        )
    except LoginLockedOut as locked:
        raise LoginRefused(
            code="locked", message=LOGIN_LOCKED_MESSAGE, retry_after=locked.lockout.retry_after_seconds
        ) from None
    except LoginGuessWrong:
        raise LoginRefused(code="invalid_credentials", message=LOGIN_INVALID_MESSAGE) from None
    user.otp_device = device  # type: ignore[attr-defined]  # read by django-otp's login hook
    return user


def _credentials_check(
    *, username: str, password: str, otp: str | None, channel: LoginChannel
) -> tuple[User, Device | None]:
    """The user and the authenticator that accepted the code; raises `LoginGuessWrong` or `LoginRefused`."""
    user = authenticate(username=username, password=password)
    if not isinstance(user, User):
        raise LoginGuessWrong("password")
    if not password_login_allowed(user):
        # Shown only after a right password, so it never says which accounts exist.
        _refusal_record(username=username, channel=channel, reason="password_login_disabled")
        raise LoginRefused(code="password_login_disabled", message=LOGIN_PASSWORD_DISABLED_MESSAGE)
    device = None
    if two_factor_enrolled(user):
        if not otp:
            raise LoginGuessWrong("otp_missing")
        device = two_factor_verify(user=user, code=otp, metadata={"for": "login", "channel": channel})
        if device is None:
            raise LoginGuessWrong("otp_invalid")
    elif two_factor_required(user):
        # Shown only after a right password: it says the account exists and needs enrolling.
        _refusal_record(username=username, channel=channel, reason="otp_enrolment_required")
        raise LoginRefused(
            code="otp_enrolment_required",
            message=LOGIN_ENROLMENT_REQUIRED_MESSAGE,
            enrolment_token=enrolment_token_issue(user=user),
        )
    return user, device


def _refusal_record(*, username: str, channel: LoginChannel, reason: str) -> None:
    """Audit a refusal that followed a right password."""
    audit_event_record(
        action="auth.login.failed",
        **login_attempt_subject(username=username),
        outcome=AuditEvent.Outcome.DENIED,
        metadata={"method": "password", "channel": channel, "reason": reason},
    )

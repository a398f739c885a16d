"""One login policy for both doors: the token endpoint of the API and the console's login form.

In order: a lockout (per account and per client address) refuses before the password is
looked at; then the password; then the second factor: anyone with a confirmed authenticator
must send a one-time code, which is good once, and an admin without one is refused when the
deployment requires it. Every refusal is audited, with the reason for auditors; the caller
gets only one message for a wrong password, a missing code and a wrong code, so the answer
never says which of them was right. Wrong passwords and wrong or missing codes count toward
the lockout; a login that passes clears the account's counter.
"""

from typing import Any, Literal

from django.contrib.auth import authenticate

from accounts.login_throttle import login_failure_record, login_failures_clear, login_lockout_current
from accounts.models import User
from accounts.two_factor import two_factor_enrolled, two_factor_required, two_factor_verify
from audit.models import AuditEvent
from audit.services import audit_event_record

LoginChannel = Literal["api", "console"]
LoginRefusalCode = Literal["invalid_credentials", "locked", "otp_enrolment_required"]

LOGIN_INVALID_MESSAGE = "Invalid username, password or one-time code."
LOGIN_LOCKED_MESSAGE = "Too many failed logins; try again later."
LOGIN_ENROLMENT_REQUIRED_MESSAGE = (
    "Two-factor authentication is required for administrators and this account has no "
    "authenticator yet. Enrol one with `manage.py twofactor_enroll USERNAME`."
)


class LoginRefused(Exception):
    """A login that did not pass; `code` and `message` are safe to show, `retry_after` is seconds."""

    def __init__(self, *, code: LoginRefusalCode, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.code: LoginRefusalCode = code
        self.message = message
        self.retry_after = retry_after


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


def _failure(*, username: str, client_ip: str | None, channel: LoginChannel, reason: str) -> LoginRefused:
    """Audit and count one failed attempt; returns the refusal to raise."""
    audit_event_record(
        action="auth.login.failed",
        **login_attempt_subject(username=username),
        outcome=AuditEvent.Outcome.FAILURE,
        metadata={"method": "password", "channel": channel, "reason": reason},
    )
    triggered = login_failure_record(username=username, client_ip=client_ip)
    if triggered is not None:
        audit_event_record(
            action="auth.login.locked",
            **login_attempt_subject(username=username),
            outcome=AuditEvent.Outcome.DENIED,
            metadata={
                "lockout": triggered.scope,
                "seconds": triggered.retry_after_seconds,
                "channel": channel,
            },
        )
    return LoginRefused(code="invalid_credentials", message=LOGIN_INVALID_MESSAGE)


def login_authenticate(
    *, username: str, password: str, otp: str | None, client_ip: str | None, channel: LoginChannel
) -> User:
    """Check a login against the policy; returns the user, or raises `LoginRefused`.

    The returned user carries `otp_device`: the authenticator that accepted the code, or None
    (django-otp marks a console session verified from it). Django's ModelBackend hashes a
    dummy password for unknown usernames, so the answer takes as long either way. Success is
    audited by the caller, which knows what the login opened (a session, a console visit).
    """
    lockout = login_lockout_current(username=username, client_ip=client_ip)
    if lockout is not None:
        audit_event_record(
            action="auth.login.blocked",
            **login_attempt_subject(username=username),
            outcome=AuditEvent.Outcome.DENIED,
            metadata={
                "lockout": lockout.scope,
                "retry_after": lockout.retry_after_seconds,
                "channel": channel,
            },
        )
        raise LoginRefused(
            code="locked", message=LOGIN_LOCKED_MESSAGE, retry_after=lockout.retry_after_seconds
        )
    user = authenticate(username=username, password=password)
    if not isinstance(user, User):
        raise _failure(username=username, client_ip=client_ip, channel=channel, reason="password")
    device = None
    if two_factor_enrolled(user):
        if not otp:
            raise _failure(username=username, client_ip=client_ip, channel=channel, reason="otp_missing")
        device = two_factor_verify(user=user, code=otp)
        if device is None:
            raise _failure(username=username, client_ip=client_ip, channel=channel, reason="otp_invalid")
    elif two_factor_required(user):
        # Shown only after a right password: it says the account exists and needs enrolling.
        audit_event_record(
            action="auth.login.failed",
            **login_attempt_subject(username=username),
            outcome=AuditEvent.Outcome.DENIED,
            metadata={"method": "password", "channel": channel, "reason": "otp_enrolment_required"},
        )
        raise LoginRefused(code="otp_enrolment_required", message=LOGIN_ENROLMENT_REQUIRED_MESSAGE)
    login_failures_clear(username=username)
    user.otp_device = device  # type: ignore[attr-defined]  # read by django-otp's login hook
    return user

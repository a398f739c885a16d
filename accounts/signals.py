"""Audit console (session) logins, which go through Django's login rather than our API."""

from typing import Any

from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.dispatch import receiver

from accounts.services.sessions import login_attempt_subject
from audit.models import AuditEvent
from audit.services import audit_event_record


@receiver(user_logged_in, dispatch_uid="accounts.audit.console_login")
def _console_login(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    audit_event_record(
        action="auth.login.succeeded",
        actor=user,
        target=user,
        metadata={
            "method": "password",
            "channel": "console",
            "second_factor": bool(getattr(user, "otp_device", None)),
        },
    )


@receiver(user_login_failed, dispatch_uid="accounts.audit.console_login_failed")
def _console_login_failed(
    sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any
) -> None:
    if request is None or not request.path.startswith("/admin/"):
        return  # API logins audit themselves in auth_tokens_obtain
    audit_event_record(
        action="auth.login.failed",
        **login_attempt_subject(username=str(credentials.get("username", ""))),
        outcome=AuditEvent.Outcome.FAILURE,
        metadata={"method": "password", "channel": "console"},
    )

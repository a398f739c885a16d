"""Audit console (session) logins, which go through Django's login rather than our API.

Refused logins, on either door, are audited once by the login policy
(accounts.services.login), which both the API and the console's login form call.
"""

from typing import Any

from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver

from audit.services import audit_event_record


@receiver(user_logged_in, dispatch_uid="accounts.audit.console_login")
def _console_login(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    audit_event_record(
        action="auth.login.succeeded",
        actor=user,
        target=user,
        # A single sign-on says how it went (sso.console_views); else it was a password.
        metadata={
            **(
                getattr(user, "login_audit", None)
                or {"method": "password", "second_factor": bool(getattr(user, "otp_device", None))}
            ),
            "channel": "console",
        },
    )

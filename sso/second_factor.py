"""A console session whose provider proved a second factor (its `amr`/`acr`, where trusted).

The mark is set by the single sign-on view right after it logs the person in, and wiped by
every login before that, so a later password login in the same browser never inherits it.
"""

from typing import Any

from django.contrib.auth.signals import user_logged_in
from django.contrib.sessions.backends.base import SessionBase
from django.dispatch import receiver

SSO_MFA_SESSION_KEY = "gatehouse_sso_mfa"


def sso_session_second_factor(session: SessionBase) -> bool:
    """Whether this console session's sign-in was vouched for by the provider's second factor."""
    return bool(session.get(SSO_MFA_SESSION_KEY))


@receiver(user_logged_in, dispatch_uid="sso.second_factor.forget")
def _forget_on_login(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if request is not None and hasattr(request, "session"):
        request.session.pop(SSO_MFA_SESSION_KEY, None)

"""How long a login lasts, whatever keeps it fresh.

A login (a refresh-token family, or a console session) ends GATEHOUSE_SESSION_MAX_AGE seconds
after the password was typed, however often it is refreshed or used since. Console sessions
remember when they were authenticated in the session itself: Django's own cookie age slides
with each save, so it cannot carry an absolute limit.
"""

from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver
from django.utils import timezone

# When the password (and second factor) were given for this session: the lifetime's start.
SESSION_LOGIN_AT = "gatehouse_login_at"
# When this session last proved itself: the login, or its owner changing their password in it.
# A session is refused once its user's `tokens_valid_after` is later than this.
SESSION_RENEWED_AT = "gatehouse_renewed_at"


def session_max_age() -> timedelta:
    return timedelta(seconds=settings.GATEHOUSE_SESSION_MAX_AGE)


def session_lifetime_over(*, started_at: datetime) -> bool:
    """Whether a login that started at `started_at` has outlived GATEHOUSE_SESSION_MAX_AGE."""
    return timezone.now() - started_at > session_max_age()


def session_stamp(value: Any) -> datetime | None:
    """A time stored in a session (seconds since the epoch), or None when absent or malformed."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return datetime.fromtimestamp(value, tz=UTC)


def session_renew(*, session: Any) -> None:
    """This session proved itself now (a login, or a password change made in it)."""
    session[SESSION_RENEWED_AT] = timezone.now().timestamp()


@receiver(user_logged_in, dispatch_uid="accounts.session_lifetime.stamp")
def _login_stamp(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    session = getattr(request, "session", None)
    if session is None:
        return
    session[SESSION_LOGIN_AT] = timezone.now().timestamp()
    session_renew(session=session)

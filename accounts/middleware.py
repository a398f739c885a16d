"""Console sessions end when their login does: lifetime, logout everywhere, a new password."""

from typing import Any

from django.contrib.auth import HASH_SESSION_KEY, logout
from django.http import HttpRequest, HttpResponseBase
from django.utils.deprecation import MiddlewareMixin

from accounts.acting_user import acting_user_set
from accounts.models import User
from accounts.principal import CredentialRejected, console_session_check
from accounts.session_lifetime import session_renew

# The session's auth hash when the request came in, to see whether the view renewed it.
_HASH_BEFORE = "_gatehouse_session_hash_before"


class ConsoleSessionMiddleware(MiddlewareMixin):
    """Log out a console session that is over; remember who is signed in while a view runs.

    Over: older than GATEHOUSE_SESSION_MAX_AGE since its login (Django's own cookie age slides
    with use), or authenticated before the user's `tokens_valid_after` (logout everywhere, a
    password change, deactivation). A view that keeps the session across its owner's password
    change (Django's `update_session_auth_hash`) renews it, so that one session lives on.
    """

    def process_request(self, request: HttpRequest) -> None:
        acting_user_set(None)
        user: Any = request.user
        if not user.is_authenticated:
            return
        try:
            console_session_check(user, data=request.session)
        except CredentialRejected:
            logout(request)
            return
        setattr(request, _HASH_BEFORE, request.session.get(HASH_SESSION_KEY))
        acting_user_set(getattr(user, "_wrapped", user) if not isinstance(user, User) else user)

    def process_response(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        acting_user_set(None)
        if not hasattr(request, _HASH_BEFORE) or not request.user.is_authenticated:
            return response
        if request.session.get(HASH_SESSION_KEY) != getattr(request, _HASH_BEFORE):
            session_renew(session=request.session)
        return response

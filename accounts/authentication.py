"""DRF authentication and permissions built on `accounts.principal`."""

from dataclasses import dataclass
from typing import Any

from django.core.exceptions import PermissionDenied
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from accounts.client_ip import client_ip_resolve
from accounts.enrolment_tokens import ENROLMENT_TOKEN_PREFIX, enrolment_token_user
from accounts.models import User
from accounts.principal import CredentialRejected, Principal, principal_from_bearer
from accounts.session_lifetime import SESSION_RENEWED_AT


def request_client_ip(request: Any) -> str | None:
    return client_ip_resolve(
        remote_addr=request.META.get("REMOTE_ADDR"), forwarded_for=request.META.get("HTTP_X_FORWARDED_FOR")
    )


class BearerAuthentication(BaseAuthentication):
    """`Authorization: Bearer <JWT access token | gk_ API key>`; `request.auth` is the Principal."""

    def authenticate(self, request: Request) -> tuple[User, Principal] | None:
        header = get_authorization_header(request).decode("latin-1")
        scheme, _, credential = header.partition(" ")
        if scheme.lower() != "bearer":
            return None
        credential = credential.strip()
        if not credential:
            raise AuthenticationFailed("The Authorization header has no token.")
        try:
            principal = principal_from_bearer(raw=credential, client_ip=request_client_ip(request))
        except CredentialRejected as rejected:
            raise AuthenticationFailed(rejected.message) from None
        return principal.user, principal

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


@dataclass(frozen=True)
class EnrolmentGrant:
    """`request.auth` for a caller holding an enrolment token: it opens enrolment, nothing else."""

    token: str


class EnrolmentTokenAuthentication(BaseAuthentication):
    """`Authorization: Bearer enrol_...`: the token of a 403 `otp_enrolment_required`.

    Only the enrolment endpoints list this class; everywhere else the token is no JWT and
    no API key, so it is refused (401).
    """

    def authenticate(self, request: Request) -> tuple[User, EnrolmentGrant] | None:
        scheme, _, credential = get_authorization_header(request).decode("latin-1").partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential.startswith(ENROLMENT_TOKEN_PREFIX):
            return None
        user = enrolment_token_user(token=credential)
        if user is None:
            raise AuthenticationFailed("The enrolment token is invalid, used or expired; log in again.")
        return user, EnrolmentGrant(token=credential)

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


def console_user(request: Any) -> User:
    """The user behind a console request (the admin site lets only authenticated staff this far)."""
    if not isinstance(request.user, User):
        raise PermissionDenied
    return request.user


def request_principal(request: Request) -> Principal:
    """The caller as a Principal, whether they came by bearer token or console session."""
    if isinstance(request.auth, Principal):
        return request.auth
    # A console session: what it hangs on goes with it (a websocket ticket, say).
    session = getattr(request, "session", None)
    return Principal(
        user=request.user,  # type: ignore[arg-type]
        method="session",
        session_key=session.session_key if session is not None else None,
        authenticated_at=session.get(SESSION_RENEWED_AT) if session is not None else None,
    )


# What a key without an endpoint's scope is told, by the DRF views and the doors before Django.
SCOPE_MISSING_MESSAGE = "This API key does not have the scope this endpoint needs."


class HasScope(BasePermission):
    """API keys reach only the endpoints their scopes name (`required_scope` on the view)."""

    message = SCOPE_MISSING_MESSAGE

    def has_permission(self, request: Request, view: Any) -> bool:
        scope = getattr(view, "required_scope", None)
        return scope is None or request_principal(request).has_scope(scope)


class InteractiveLoginOnly(BasePermission):
    """Credentials management needs a login, not an API key: a leaked key cannot mint more."""

    message = "Use a login session or access token for this endpoint, not an API key."

    def has_permission(self, request: Request, view: Any) -> bool:
        return request_principal(request).api_key is None

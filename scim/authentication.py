"""SCIM's door: a SCIM token and nothing else.

`Authorization: Bearer scim_<prefix>_<secret>`. JWTs, API keys and console sessions are
refused here (401), and a SCIM token is refused everywhere else: its scheme is neither an API
key's nor a JWT's, so the API's authentication rejects it.
"""

from dataclasses import dataclass
from typing import Any

from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from scim.models import ScimToken
from scim.selectors import scim_token_by_prefix
from scim.services import scim_token_touch
from scim.tokens import scim_token_parse, scim_token_secret_matches

_INVALID = "The SCIM token is invalid or revoked."


@dataclass(frozen=True)
class ScimCaller:
    """`request.user` of a SCIM request: the identity provider behind a token, not a person."""

    token: ScimToken
    is_authenticated: bool = True
    is_active: bool = True
    is_staff: bool = False
    is_superuser: bool = False
    pk: None = None

    def __str__(self) -> str:
        return self.token.audit_display


class ScimTokenAuthentication(BaseAuthentication):
    """Bearer SCIM tokens; `request.auth` is the ScimToken. Failures are 401 with
    `WWW-Authenticate: Bearer`, and say no more than that the token is not good here."""

    def authenticate(self, request: Request) -> tuple[ScimCaller, ScimToken] | None:
        header = get_authorization_header(request).decode("latin-1")
        scheme, _, credential = header.partition(" ")
        if scheme.lower() != "bearer":
            return None
        parsed = scim_token_parse(credential.strip())
        if parsed is None:
            raise AuthenticationFailed("SCIM endpoints take a SCIM token, not a login or an API key.")
        prefix, secret = parsed
        token = scim_token_by_prefix(prefix=prefix)
        if not scim_token_secret_matches(secret=secret, expected_hash=token.secret_hash if token else None):
            raise AuthenticationFailed(_INVALID)
        if token is None or token.revoked_at is not None:
            raise AuthenticationFailed(_INVALID)
        scim_token_touch(token=token)
        return ScimCaller(token=token), token

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="scim"'


class ScimTokenRequired(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.auth, ScimToken)

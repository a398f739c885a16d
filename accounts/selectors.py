"""Reads for identity."""

from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken

from accounts.models import User


def user_get_from_access_token(*, raw_token: str) -> User | None:
    """The active user an access token belongs to, or None for any invalid token.

    Goes through simplejwt's own validation (signature, algorithm, audience, issuer,
    expiry, token type), so the websocket accepts exactly what the REST API accepts.
    """
    authenticator = JWTAuthentication()
    try:
        validated = authenticator.get_validated_token(raw_token.encode())
        user = authenticator.get_user(validated)
    except (InvalidToken, AuthenticationFailed):
        return None
    return user if isinstance(user, User) and user.is_active else None

"""Websocket handshake authentication: session cookie, or an `Authorization: Bearer` header.

Tokens are never read from the URL: query strings end up in proxy and access logs.
"""

from typing import Any

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from django.contrib.auth.models import AnonymousUser

from accounts.selectors import user_get_from_access_token


def _bearer_token(scope: dict[str, Any]) -> str | None:
    for name, value in scope.get("headers", []):
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return None


class BearerTokenAuthMiddleware(BaseMiddleware):  # type: ignore[misc]
    """Authenticate from an Authorization header when one is sent.

    A header that is present but invalid leaves the connection anonymous even if a session
    cookie is also present: explicit credentials that fail must not fall back silently.
    """

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        token = _bearer_token(scope)
        if token is not None:
            user = (
                await database_sync_to_async(user_get_from_access_token)(raw_token=token) if token else None
            )
            scope = {**scope, "user": user or AnonymousUser(), "auth_method": "bearer"}
        return await super().__call__(scope, receive, send)


def WebsocketAuthMiddlewareStack(inner: Any) -> Any:  # noqa: N802 - mirrors Channels' AuthMiddlewareStack
    return AuthMiddlewareStack(BearerTokenAuthMiddleware(inner))

"""Websocket handshake authentication: session cookie, `Authorization: Bearer`, or `?ticket=`.

Long-lived tokens are never read from the URL, where proxies and access logs keep them;
a browser, which cannot set headers on a websocket, first trades its session for a
single-use ticket that lives seconds.
"""

from typing import Any
from urllib.parse import parse_qs

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from django.contrib.auth.models import AnonymousUser

from accounts.client_ip import client_ip_resolve
from accounts.models import User
from accounts.principal import CredentialRejected, Principal, principal_from_bearer, principal_from_session
from accounts.tickets import ws_ticket_redeem
from gatehouse.database_calls import reloaded_in_one_transaction
from gatehouse.local_cache import NotCached, local_caches_only


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


def scope_client_ip(scope: dict[str, Any]) -> str | None:
    client = scope.get("client") or (None, None)
    return client_ip_resolve(remote_addr=client[0], forwarded_for=_header(scope, b"x-forwarded-for"))


def _bearer(scope: dict[str, Any]) -> str | None:
    header = _header(scope, b"authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _ticket(scope: dict[str, Any]) -> str | None:
    tickets = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("ticket")
    return tickets[0] if tickets else None


def _resolve(scope: dict[str, Any], *, bearer: str | None, ticket: str | None) -> Principal | None:
    """The principal for the explicit credentials sent; None when they fail."""
    if bearer is not None:
        try:
            return principal_from_bearer(raw=bearer, client_ip=scope_client_ip(scope)) if bearer else None
        except CredentialRejected:
            return None
    return ws_ticket_redeem(ticket=ticket) if ticket is not None else None


def _session_principal(scope: dict[str, Any]) -> Principal | None:
    """The console session's principal when its cookie authenticated the handshake, else None.

    The connection then hangs on that session: it closes when the session is logged out or
    ends otherwise. A session past its lifetime, or older than its user's
    `tokens_valid_after`, does not open a connection.
    """
    user = scope.get("user")
    session = scope.get("session")
    if not isinstance(user, User) or not user.is_authenticated or session is None:
        return None
    try:
        return principal_from_session(user=user, session_key=session.session_key, data=session)
    except CredentialRejected:
        return None


class CredentialAuthMiddleware(BaseMiddleware):  # type: ignore[misc]
    """Authenticate from a bearer header or a ticket when one is sent, else the session cookie.

    Explicit credentials that fail leave the connection anonymous even if a session cookie
    is also present: they must not fall back silently to another identity.
    """

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        bearer, ticket = _bearer(scope), _ticket(scope)
        if bearer:
            try:  # from the caches the /v1 door trusts, when they hold the credential
                with local_caches_only():
                    principal = _resolve(scope, bearer=bearer, ticket=None)
            except NotCached:
                principal = await database_sync_to_async(reloaded_in_one_transaction(_resolve))(
                    scope, bearer=bearer, ticket=None
                )
        elif bearer is not None or ticket is not None:
            principal = await database_sync_to_async(_resolve)(scope, bearer=bearer, ticket=ticket)
        else:
            principal = await database_sync_to_async(_session_principal)(scope)
        scope = {
            **scope,
            "user": principal.user if principal else AnonymousUser(),
            "principal": principal,
        }
        return await super().__call__(scope, receive, send)


# Close codes mirroring HTTP 401 and 403, in the 4000-4999 range left to applications.
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403


class RequireChatCredentials:
    """Refuse the handshake of anyone not authenticated, or of a key without the `chat` scope.

    Refusing here, before the consumer exists, means a rejected client never gets a consumer
    nor a channel-layer subscription (a blocking Redis read each) only to be closed at once.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        user = scope.get("user")
        principal: Principal | None = scope.get("principal")
        code = None
        if user is None or not user.is_authenticated:
            code = CLOSE_UNAUTHENTICATED
        elif principal is not None and not principal.has_scope("chat"):
            code = CLOSE_FORBIDDEN
        if code is None:
            return await self.inner(scope, receive, send)
        await receive()  # the websocket.connect event
        # A close before accept rejects the handshake (HTTP 403 to the client).
        await send({"type": "websocket.close", "code": code})
        return None


class ExplicitCredentialsFirst:
    """A handshake that sends a bearer header or a ticket is authenticated by those alone, so
    the console's cookie, session and user are not read for it (nor its session saved on each
    frame sent); any other goes through channels' session stack."""

    def __init__(self, *, explicit: Any, otherwise: Any) -> None:
        self.explicit, self.otherwise = explicit, otherwise

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if _bearer(scope) is not None or _ticket(scope) is not None:
            return await self.explicit(scope, receive, send)
        return await self.otherwise(scope, receive, send)


def WebsocketAuthMiddlewareStack(inner: Any) -> Any:  # noqa: N802 - mirrors Channels' AuthMiddlewareStack
    credentials = CredentialAuthMiddleware(RequireChatCredentials(inner))
    return ExplicitCredentialsFirst(explicit=credentials, otherwise=AuthMiddlewareStack(credentials))

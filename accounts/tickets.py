"""Single-use websocket tickets (SPEC §6): `POST /api/ws-ticket/`, then `/ws/chat/?ticket=`.

A ticket lives TICKET_TTL_SECONDS and works once. Only its SHA-256 is used as the cache key,
and redemption relies on the cache's delete reporting whether it removed the key: of two
racing redeemers exactly one sees True (Redis DEL is atomic). The lifetime is the ticket's
own rule: it carries when it expires and is refused from then on, whatever the cache keeps.
"""

import hashlib
import secrets
from typing import Any
from uuid import UUID

from django.core.cache import cache
from django.utils import timezone

from accounts.models import ApiKey, User
from accounts.principal import CredentialRejected, Principal, principal_recheck

TICKET_TTL_SECONDS = 30
_MAX_TICKET_CHARS = 128


def _key(ticket: str) -> str:
    return "ws-ticket:" + hashlib.sha256(ticket.encode()).hexdigest()


def ws_ticket_issue(*, principal: Principal) -> str:
    """A ticket standing for `principal` and the credential it hangs on.

    The socket it opens hangs on that same credential: it closes when the JWT session, the
    console session or the API key that asked for the ticket ends.
    """
    ticket = secrets.token_urlsafe(32)
    expires_at = timezone.now().timestamp() + TICKET_TTL_SECONDS
    cache.set(
        _key(ticket),
        {
            "user_id": principal.user.pk,
            "api_key_id": principal.api_key.pk if principal.api_key else None,
            "family_id": str(principal.family_id) if principal.family_id else None,
            "issued_at": principal.issued_at,
            "session_key": principal.session_key,
            "authenticated_at": principal.authenticated_at,
            "expires_at": expires_at,
        },
        timeout=TICKET_TTL_SECONDS,
    )
    return ticket


def _expired(payload: dict[str, Any]) -> bool:
    """Past its lifetime by the clock (a ticket that does not say when it expires is too)."""
    expires_at = payload.get("expires_at")
    return not isinstance(expires_at, int | float) or timezone.now().timestamp() >= expires_at


def ws_ticket_redeem(*, ticket: str) -> Principal | None:
    """The principal a valid, unused, unexpired ticket stands for; None otherwise.

    Consumes the ticket, even one presented too late.
    """
    if not ticket or len(ticket) > _MAX_TICKET_CHARS:
        return None
    key = _key(ticket)
    payload = cache.get(key)
    if payload is None or not cache.delete(key) or _expired(payload):
        return None
    user = User.objects.filter(pk=payload["user_id"]).first()
    if user is None:
        return None
    api_key = ApiKey.objects.filter(pk=payload["api_key_id"]).first() if payload["api_key_id"] else None
    if payload["api_key_id"] and api_key is None:
        return None
    family_id = payload.get("family_id")
    principal = Principal(
        user=user,
        method="ticket",
        api_key=api_key,
        family_id=UUID(family_id) if family_id else None,
        issued_at=payload.get("issued_at"),
        session_key=payload.get("session_key"),
        authenticated_at=payload.get("authenticated_at"),
    )
    try:
        return principal_recheck(principal)
    except CredentialRejected:
        return None

"""Single-use websocket tickets (SPEC §6): `POST /api/ws-ticket/`, then `/ws/chat/?ticket=`.

A ticket lives seconds and works once. Only its SHA-256 is used as the cache key, and
redemption relies on the cache's delete reporting whether it removed the key: of two
racing redeemers exactly one sees True (Redis DEL is atomic).
"""

import hashlib
import secrets

from django.core.cache import cache

from accounts.models import ApiKey, User
from accounts.principal import CredentialRejected, Principal, principal_recheck

TICKET_TTL_SECONDS = 30
_MAX_TICKET_CHARS = 128


def _key(ticket: str) -> str:
    return "ws-ticket:" + hashlib.sha256(ticket.encode()).hexdigest()


def ws_ticket_issue(*, principal: Principal) -> str:
    ticket = secrets.token_urlsafe(32)
    cache.set(
        _key(ticket),
        {"user_id": principal.user.pk, "api_key_id": principal.api_key.pk if principal.api_key else None},
        timeout=TICKET_TTL_SECONDS,
    )
    return ticket


def ws_ticket_redeem(*, ticket: str) -> Principal | None:
    """The principal a valid, unused ticket stands for; None otherwise. Consumes the ticket."""
    if not ticket or len(ticket) > _MAX_TICKET_CHARS:
        return None
    key = _key(ticket)
    payload = cache.get(key)
    if payload is None or not cache.delete(key):
        return None
    user = User.objects.filter(pk=payload["user_id"]).first()
    if user is None:
        return None
    api_key = ApiKey.objects.filter(pk=payload["api_key_id"]).first() if payload["api_key_id"] else None
    try:
        return principal_recheck(Principal(user=user, method="ticket", api_key=api_key))
    except CredentialRejected:
        return None

"""How many chat websockets each user has open, across every web process.

Each user has `limit` slots in the cache (Redis in production, so every replica shares
them). An open connection holds one slot as a lease: an atomic add of the connection's id
under the slot's key, with a time-to-live. The connection renews its lease while it lives
and gives it back when it closes; if its process dies, the lease simply expires, so a
crashed replica's connections stop counting within LEASE_SECONDS.
"""

import random
import uuid
from dataclasses import dataclass

from django.core.cache import cache

# How long a lease lasts unless renewed, and how often a live connection renews it.
LEASE_SECONDS = 90
RENEW_EVERY_SECONDS = 30


@dataclass(frozen=True)
class ConnectionSlot:
    key: str
    holder: str


def _key(user_id: int, index: int) -> str:
    return f"inference:ws-connections:{user_id}:{index}"


def connection_slot_acquire(*, user_id: int, limit: int) -> ConnectionSlot | None:
    """Take one of the user's `limit` slots for a new connection; None when all are held.

    Slots are tried from a random one on, so connections opened together mostly find a
    free slot at the first try; all are tried before refusing.
    """
    holder = uuid.uuid4().hex
    start = random.randrange(limit)  # noqa: S311 - spreads tries, guards nothing
    for step in range(limit):
        key = _key(user_id, (start + step) % limit)
        if cache.add(key, holder, timeout=LEASE_SECONDS):
            return ConnectionSlot(key=key, holder=holder)
    return None


def connection_slot_renew(*, slot: ConnectionSlot) -> None:
    """Extend the lease; take the slot back if it lapsed (a stalled process) and is free."""
    if cache.get(slot.key) == slot.holder:
        cache.touch(slot.key, LEASE_SECONDS)
    else:
        cache.add(slot.key, slot.holder, timeout=LEASE_SECONDS)


def connection_slot_release(*, slot: ConnectionSlot) -> None:
    """The connection closed: free its slot, unless the lease lapsed and another took it."""
    if cache.get(slot.key) == slot.holder:
        cache.delete(slot.key)

"""The per-user bound on open chat websockets: leases in the shared cache that expire.

Time is advanced for one lease by ageing its key in the cache itself (the in-memory
cache's expiry table, or the key's time-to-live in Redis), so both profiles run it.
"""

from collections.abc import Iterator

import pytest
from django.conf import settings
from django.core.cache import caches

from inference.connection_slots import (
    LEASE_SECONDS,
    RENEW_EVERY_SECONDS,
    ConnectionSlot,
    connection_slot_acquire,
    connection_slot_release,
    connection_slot_renew,
)

USER_ID = 987_654


def _seconds_left(slot: ConnectionSlot) -> float:
    cache = caches["default"]
    key = cache.make_and_validate_key(slot.key)
    if settings.CACHES["default"]["BACKEND"].endswith("LocMemCache"):
        import time

        return float(cache._expire_info[key]) - time.time()  # type: ignore[attr-defined]
    return float(cache._cache.get_client(key).pttl(key)) / 1000  # type: ignore[attr-defined]


def _age(slot: ConnectionSlot, seconds: float) -> None:
    """As if `seconds` passed for this lease (and nobody renewed it)."""
    cache = caches["default"]
    key = cache.make_and_validate_key(slot.key)
    if settings.CACHES["default"]["BACKEND"].endswith("LocMemCache"):
        cache._expire_info[key] -= seconds  # type: ignore[attr-defined]
        return
    client = cache._cache.get_client(key, write=True)  # type: ignore[attr-defined]
    left = client.pttl(key) - int(seconds * 1000)
    if left <= 0:
        client.delete(key)
    else:
        client.pexpire(key, left)


@pytest.fixture
def held() -> Iterator[list[ConnectionSlot]]:
    slots: list[ConnectionSlot] = []
    yield slots
    for slot in slots:
        connection_slot_release(slot=slot)


def _acquire(held: list[ConnectionSlot], limit: int) -> ConnectionSlot | None:
    slot = connection_slot_acquire(user_id=USER_ID, limit=limit)
    if slot is not None:
        held.append(slot)
    return slot


def test_a_user_holds_at_most_limit_slots_and_a_release_frees_one(held: list[ConnectionSlot]) -> None:
    first, second = _acquire(held, 2), _acquire(held, 2)
    assert first is not None
    assert second is not None
    assert first.key != second.key
    assert _acquire(held, 2) is None
    other = connection_slot_acquire(user_id=USER_ID + 1, limit=2)  # others are apart
    assert other is not None
    held.append(other)
    connection_slot_release(slot=first)
    assert _acquire(held, 2) is not None


def test_the_leases_of_a_process_that_died_expire(held: list[ConnectionSlot]) -> None:
    slots = [_acquire(held, 3) for _ in range(3)]
    assert all(slot is not None for slot in slots)
    assert _acquire(held, 3) is None
    # Its process died: nothing renews or releases them; their leases run out.
    for slot in slots:
        assert slot is not None
        assert 0 < _seconds_left(slot) <= LEASE_SECONDS
        _age(slot, LEASE_SECONDS)
    assert _acquire(held, 3) is not None


def test_a_live_connection_renews_its_lease_before_it_runs_out(held: list[ConnectionSlot]) -> None:
    slot = _acquire(held, 1)
    assert slot is not None
    _age(slot, LEASE_SECONDS - RENEW_EVERY_SECONDS)
    connection_slot_renew(slot=slot)
    assert _seconds_left(slot) > LEASE_SECONDS - 5
    _age(slot, LEASE_SECONDS - RENEW_EVERY_SECONDS)
    assert _acquire(held, 1) is None  # still its own


def test_a_release_after_the_lease_lapsed_leaves_the_new_holder_alone(held: list[ConnectionSlot]) -> None:
    stalled = _acquire(held, 1)
    assert stalled is not None
    _age(stalled, LEASE_SECONDS)
    newcomer = _acquire(held, 1)
    assert newcomer is not None
    connection_slot_release(slot=stalled)
    connection_slot_renew(slot=stalled)  # nor does a late renewal take it back
    assert _acquire(held, 1) is None

"""Quota ledgers hold exactly under concurrency, and never leak a reservation.

The SQL ledger runs on the profile's database (SQLite embedded, PostgreSQL in production);
the Redis ledger runs in the production profile, where Redis is part of the configuration.
"""

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.conf import settings
from django.db import close_old_connections
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from accounts.quotas.ledger import CounterSpec, QuotaExceeded, QuotaLedger, Reservation
from accounts.quotas.sql_ledger import SqlQuotaLedger
from tests.profile import PRODUCTION

pytestmark = pytest.mark.django_db(transaction=True)
KINDS = ["sql", "redis"] if PRODUCTION else ["sql"]


@pytest.fixture(params=KINDS)
def ledger(request: pytest.FixtureRequest) -> Iterator[QuotaLedger]:
    if request.param == "sql":
        yield SqlQuotaLedger()
        return
    import redis

    from accounts.quotas.redis_ledger import RedisQuotaLedger

    client = redis.Redis.from_url(settings.REDIS_URL)
    prefix = f"test-quota:{uuid.uuid4().hex}"
    yield RedisQuotaLedger(client=client, prefix=prefix)
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)


def _counter(limit: int) -> CounterSpec:
    return CounterSpec(key=f"requests:{uuid.uuid4().hex}", limit=limit, ttl_seconds=3600)


def test_two_hundred_concurrent_reservations_on_a_limit_of_one_hundred(ledger: QuotaLedger) -> None:
    counter = _counter(100)

    def attempt(_: int) -> bool:
        try:
            ledger.reserve(counters=[counter], amount=1, lease_seconds=60)
        except QuotaExceeded:
            return False
        finally:
            close_old_connections()
        return True

    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(pool.map(attempt, range(200)))
    assert outcomes.count(True) == 100
    assert outcomes.count(False) == 100
    assert ledger.used(key=counter.key) == 100


def test_a_refusal_names_its_counter_and_moves_none(ledger: QuotaLedger) -> None:
    roomy, tight = _counter(1000), _counter(10)
    ledger.reserve(counters=[roomy, tight], amount=8, lease_seconds=60)
    with pytest.raises(QuotaExceeded) as refused:
        ledger.reserve(counters=[roomy, tight], amount=5, lease_seconds=60)
    assert (refused.value.key, refused.value.limit, refused.value.used) == (tight.key, 10, 8)
    assert ledger.used(key=roomy.key) == 8  # the roomy counter did not move either


def test_settling_charges_what_was_used_and_releasing_gives_all_back(ledger: QuotaLedger) -> None:
    counter = _counter(100)
    first = ledger.reserve(counters=[counter], amount=40, lease_seconds=60)
    second = ledger.reserve(counters=[counter], amount=40, lease_seconds=60)
    ledger.settle(reservation=first, actual=12)
    ledger.release(reservation=second)
    assert ledger.used(key=counter.key) == 12
    ledger.release(reservation=second)  # twice is harmless
    assert ledger.used(key=counter.key) == 12


def test_a_lease_whose_holder_died_expires_and_is_given_back(ledger: QuotaLedger) -> None:
    counter = _counter(10)
    ledger.reserve(counters=[counter], amount=10, lease_seconds=0.2)  # never settled
    with pytest.raises(QuotaExceeded):
        ledger.reserve(counters=[counter], amount=1, lease_seconds=60)
    time.sleep(0.3)
    ledger.reserve(counters=[counter], amount=10, lease_seconds=60)
    assert ledger.used(key=counter.key) == 10


def test_a_late_settle_after_expiry_still_charges_what_was_used(ledger: QuotaLedger) -> None:
    counter = _counter(100)
    slow = ledger.reserve(counters=[counter], amount=50, lease_seconds=0.1)
    time.sleep(0.2)
    ledger.reserve(counters=[counter], amount=1, lease_seconds=60)  # reclaims the expired lease
    ledger.settle(reservation=slow, actual=7)
    assert ledger.used(key=counter.key) == 1 + 7


operations = st.lists(
    st.one_of(
        st.tuples(st.just("reserve"), st.integers(min_value=1, max_value=40)),
        st.tuples(st.just("settle"), st.integers(min_value=0, max_value=40)),
        st.tuples(st.just("release"), st.just(0)),
    ),
    max_size=25,
)


@pytest.mark.parametrize("kind", KINDS)
@hypothesis_settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=operations)
def test_any_sequence_of_operations_keeps_the_counter_exact(kind: str, steps: list[tuple[str, int]]) -> None:
    """The counter always equals open reservations plus settled charges, and never passes its limit."""
    ledger: QuotaLedger
    if kind == "sql":
        ledger = SqlQuotaLedger()
    else:
        import redis

        from accounts.quotas.redis_ledger import RedisQuotaLedger

        ledger = RedisQuotaLedger(client=redis.Redis.from_url(settings.REDIS_URL), prefix="test-quota-prop")
    counter = _counter(100)
    open_reservations: list[Reservation] = []
    charged = 0
    for operation, amount in steps:
        if operation == "reserve":
            expected_ok = sum(r.amount for r in open_reservations) + charged + amount <= counter.limit
            try:
                open_reservations.append(ledger.reserve(counters=[counter], amount=amount, lease_seconds=600))
                assert expected_ok
            except QuotaExceeded:
                assert not expected_ok
        elif open_reservations:
            reservation = open_reservations.pop(0)
            if operation == "settle":
                actual = min(amount, reservation.amount)
                ledger.settle(reservation=reservation, actual=actual)
                charged += actual
            else:
                ledger.release(reservation=reservation)
        assert ledger.used(key=counter.key) == sum(r.amount for r in open_reservations) + charged
        assert ledger.used(key=counter.key) <= counter.limit
    for reservation in open_reservations:  # every path ends settled or released: nothing leaks
        ledger.release(reservation=reservation)
    assert ledger.used(key=counter.key) == charged


def test_counters_of_windows_long_over_are_swept_with_their_leases() -> None:
    from datetime import timedelta

    from django.utils import timezone

    from accounts.models import QuotaCounter, QuotaLease
    from accounts.quotas.sql_ledger import quota_counters_sweep

    ledger = SqlQuotaLedger()
    old, current = _counter(10), _counter(10)
    ledger.reserve(counters=[old, current], amount=1, lease_seconds=60)
    QuotaCounter.objects.filter(key=old.key).update(expires_at=timezone.now() - timedelta(days=2))
    assert quota_counters_sweep() == 1
    assert list(QuotaCounter.objects.values_list("key", flat=True)) == [current.key]
    assert QuotaLease.objects.count() == 1

"""The quota ledger in the database: a conditional UPDATE per counter, in one transaction.

`UPDATE ... SET used = used + n WHERE used + n <= limit` either moves a counter or touches
no row, atomically, on SQLite and PostgreSQL alike; if any counter refuses, the transaction
rolls back the ones already moved. This is the embedded default's ledger.

A database that cannot answer (away, locked, its connection dropped) is a ledger that cannot:
LedgerUnavailable, so token quotas fail closed exactly as with Redis.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from django.db import InterfaceError, OperationalError, transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import QuotaCounter, QuotaLease
from accounts.quotas.ledger import CounterSpec, LedgerUnavailable, QuotaExceeded, Reservation


@contextmanager
def _store() -> Iterator[None]:
    """Run against the database (outside its transaction, so that is rolled back first)."""
    try:
        yield
    except (OperationalError, InterfaceError) as error:
        raise LedgerUnavailable(f"the quota database cannot answer: {error}") from error


class SqlQuotaLedger:
    def reserve(self, *, counters: list[CounterSpec], amount: int, lease_seconds: float) -> Reservation:
        now = timezone.now()
        reservation = Reservation(counters=tuple(counters), amount=amount)
        with _store(), transaction.atomic():
            rows = self._counters(counters, now=now)
            for spec in counters:
                counter = rows[spec.key]
                self._reclaim_expired(counter, now=now)
                moved = QuotaCounter.objects.filter(pk=counter.pk, used__lte=spec.limit - amount).update(
                    used=F("used") + amount
                )
                if not moved:
                    used = QuotaCounter.objects.values_list("used", flat=True).get(pk=counter.pk)
                    raise QuotaExceeded(key=spec.key, limit=spec.limit, used=used)
            expires_at = now + timedelta(seconds=lease_seconds)
            QuotaLease.objects.bulk_create(
                QuotaLease(
                    reservation_id=reservation.id,
                    counter=rows[spec.key],
                    amount=amount,
                    expires_at=expires_at,
                )
                for spec in counters
            )
        return reservation

    def settle(self, *, reservation: Reservation, actual: int) -> None:
        with _store(), transaction.atomic():
            self._end(reservation, charge=actual)

    def release(self, *, reservation: Reservation) -> None:
        with _store(), transaction.atomic():
            self._end(reservation, charge=0)

    def used(self, *, key: str) -> int:
        with _store():
            return QuotaCounter.objects.filter(key=key).values_list("used", flat=True).first() or 0

    # --- helpers -------------------------------------------------------------------------------

    def _counters(self, counters: list[CounterSpec], *, now: datetime) -> dict[str, QuotaCounter]:
        """The counters' rows, created where missing (a concurrent creator is not an error)."""
        QuotaCounter.objects.bulk_create(
            [QuotaCounter(key=c.key, expires_at=now + timedelta(seconds=c.ttl_seconds)) for c in counters],
            ignore_conflicts=True,
        )
        return {row.key: row for row in QuotaCounter.objects.filter(key__in=[c.key for c in counters])}

    def _reclaim_expired(self, counter: QuotaCounter, *, now: datetime) -> None:
        """Give back leases whose holder never settled them (its worker died)."""
        for lease in QuotaLease.objects.select_for_update().filter(counter=counter, expires_at__lte=now):
            # Only whoever deletes the lease gives its amount back, so it is given back once.
            if QuotaLease.objects.filter(pk=lease.pk).delete()[0]:
                QuotaCounter.objects.filter(pk=counter.pk).update(used=F("used") - lease.amount)

    def _end(self, reservation: Reservation, *, charge: int) -> None:
        leases = {
            lease.counter.key: lease
            for lease in QuotaLease.objects.select_for_update()
            .select_related("counter")
            .filter(reservation_id=reservation.id)
        }
        for spec in reservation.counters:
            lease = leases.get(spec.key)
            if lease is not None and QuotaLease.objects.filter(pk=lease.pk).delete()[0]:
                delta = charge - lease.amount
            else:
                # The lease expired and was given back already: what was used is still charged.
                delta = charge
            if delta:
                QuotaCounter.objects.filter(key=spec.key).update(used=F("used") + delta)


def quota_counters_sweep(*, older_than: timedelta = timedelta(days=1)) -> int:
    """Delete counters whose window ended more than `older_than` ago (their leases go too).

    Their keys name past windows, so nothing reads them again. Returns how many went.
    """
    return int(
        QuotaCounter.objects.filter(expires_at__lt=timezone.now() - older_than)
        .delete()[1]
        .get(QuotaCounter._meta.label, 0)
    )

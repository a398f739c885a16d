"""P6, run inside a Django process on the served stack's database (see `bench.audit`).

Prints one JSON object: what one audited append costs inside a request's transaction, what
it costs with its own commit, how appends fare with 8 writers at once (each holds the chain
lock to its commit), and how fast the whole chain verifies once it holds `--events` events.
"""

import argparse
import json
import os
import statistics
import threading
import time
import uuid


def _percentiles(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    return {
        "p50_ms": round(statistics.median(ordered), 3),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3),
        "mean_ms": round(statistics.fmean(ordered), 3),
    }


def _append_costs(appends: int) -> dict[str, object]:
    from django.db import transaction

    from accounts.models import User
    from audit.services import audit_event_record

    actor = User.objects.filter(is_superuser=True).first()
    metadata = {"model": "demo-tiny", "prompt_tokens": 12, "completion_tokens": 64, "channel": "bench"}
    in_transaction: list[float] = []
    with_commit: list[float] = []
    for _ in range(appends):
        with transaction.atomic():
            started = time.perf_counter()
            audit_event_record(action="bench.append", actor=actor, metadata=metadata)
            in_transaction.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        with transaction.atomic():
            audit_event_record(action="bench.append", actor=actor, metadata=metadata)
        with_commit.append((time.perf_counter() - started) * 1000)
    # The same transaction shape without the audit insert: what a request pays anyway.
    baseline: list[float] = []
    for _ in range(appends):
        started = time.perf_counter()
        with transaction.atomic():
            User.objects.filter(pk=actor.pk if actor else 0).exists()
        baseline.append((time.perf_counter() - started) * 1000)
    return {
        "in_transaction": _percentiles(in_transaction),
        "own_transaction_with_commit": _percentiles(with_commit),
        "read_only_transaction_baseline": _percentiles(baseline),
    }


def _concurrent_appends(writers: int, each: int) -> dict[str, object]:
    from django.db import connection, transaction

    from audit.services import audit_event_record

    latencies: list[float] = []
    barrier = threading.Barrier(writers)

    def write() -> None:
        barrier.wait()
        for _ in range(each):
            started = time.perf_counter()
            with transaction.atomic():
                audit_event_record(action="bench.concurrent", metadata={"n": 1})
            latencies.append((time.perf_counter() - started) * 1000)
        connection.close()

    threads = [threading.Thread(target=write) for _ in range(writers)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return {"writers": writers, "appends_per_s": round(writers * each / elapsed), **_percentiles(latencies)}


_SEED_BATCH = 2000


def _seed(events: int) -> None:
    """Top the chain up to `events` quickly: the same hashing, inserted in batches."""
    from django.utils import timezone

    from audit import chain
    from audit.models import AuditEvent
    from audit.services import _chain_head, chained_values

    sequence, previous = _chain_head()
    batch: list[AuditEvent] = []
    empty = chain.personal_digest(b"", ["system", "", ""])
    while sequence < events:
        sequence += 1
        event = AuditEvent(
            sequence=sequence,
            uuid=uuid.uuid4(),
            occurred_at=timezone.now(),
            actor_kind=AuditEvent.ActorKind.SYSTEM,
            actor_display="system",
            action="bench.seeded",
            metadata_json=chain.metadata_canonical({"n": sequence}),
            actor_digest=empty,
            target_digest=chain.personal_digest(b"", [""]),
        )
        event.hash = previous = chain.link_hash(previous, chain.event_canonical(chained_values(event)))
        batch.append(event)
        if len(batch) == _SEED_BATCH or sequence == events:
            AuditEvent.objects.bulk_create(batch)
            batch = []


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--appends", type=int, default=1000)
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gatehouse.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection

    # As deployed: DEBUG off, so queries are not logged (which costs more than some of them).
    settings.DEBUG = False

    from audit.verification import audit_chain_verify

    costs = _append_costs(args.appends)
    concurrent = _concurrent_appends(8, max(args.appends // 8, 10))
    _seed(args.events)
    links_only = audit_chain_verify(personal=False)
    full = audit_chain_verify(personal=True)
    print(
        json.dumps(
            {
                "database": connection.vendor,
                "append": costs,
                "concurrent": concurrent,
                "verify": {
                    "events": full.events,
                    "ok": full.ok and links_only.ok,
                    "links_and_checkpoints_events_per_s": round(links_only.events_per_second),
                    "with_personal_details_events_per_s": round(full.events_per_second),
                },
            }
        )
    )


if __name__ == "__main__":
    main()

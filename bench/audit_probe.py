"""P6 and P7, run inside a Django process on the served stack's database (see `bench.audit`).

Prints one JSON object: what one audited append costs inside a request's transaction, what
it costs with its own commit (P6a); how many events per second 8 writers append at once, each
a process of its own (P7); and how fast the whole chain then verifies (P6b, and P7's "kept").

It writes only through `audit.services.audit_event_record` and checks only with
`audit.verification.audit_chain_verify`, so it measures whatever the audit app does behind
them (a chain lock per append today; a sealer linking events off the request path, later).
The 8 writers also fill the chain the verification reads: they append until it holds
`--events` events or `--seconds` have passed, whichever comes first.

Beside that (P7's `request_path`), 8 writers append the way a served chat records its end: as
coroutines on one event loop, each event built by `audit_event_build` and committed by
`audit.appender.audit_event_append_async` (appends that overlap share one INSERT), with the
process's own sealer linking them, as in a web process.

And beside both (P7's `floor`), the least 8 Python writers can pay here for the same rows: 8
processes, each appending its row in its own transaction with psycopg alone (no Django, no
digest, no sealer) into a plain copy of the table (its columns, defaults and indexes) that the
probe makes and drops. The chain is left alone. On a small machine the floor shows how near
the database itself caps the writers' figure.
"""

import argparse
import asyncio
import functools
import json
import multiprocessing
import os
import queue
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def _percentiles(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    return {
        "p50_ms": round(statistics.median(ordered), 3),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3),
        "mean_ms": round(statistics.fmean(ordered), 3),
    }


def _rate(latencies_ms: list[float], elapsed: float) -> dict[str, float]:
    """Appends, their rate over `elapsed` seconds and their latencies' percentiles."""
    return {
        "appends": len(latencies_ms),
        "seconds": round(elapsed, 2),
        "appends_per_s": round(len(latencies_ms) / elapsed) if elapsed else 0,
        **(_percentiles(latencies_ms) if latencies_ms else {}),
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


def _django_setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gatehouse.settings")
    import django

    django.setup()
    from django.conf import settings

    # As deployed: DEBUG off, so queries are not logged (which costs more than some of them).
    settings.DEBUG = False


def _writer(barrier: Any, counter: Any, target: int, seconds: float, results: Any) -> None:
    """One of the concurrent writers, in a process of its own: append, each in its own
    transaction, until `counter` (shared) reaches `target` or `seconds` have passed."""
    _django_setup()
    from django.db import connection, transaction

    from audit.services import audit_event_record

    def append() -> None:
        with transaction.atomic():
            audit_event_record(action="bench.concurrent", metadata={"n": 1})

    _appends_timed(barrier, counter, target, seconds, results, append=append)
    connection.close()


def _appends_timed(
    barrier: Any, counter: Any, target: int, seconds: float, results: Any, *, append: Callable[[], None]
) -> None:
    """A writer's loop: once every writer is set up, `append` until `counter` (shared) reaches
    `target` or `seconds` have passed; put its start, end and latencies on `results`."""
    latencies: list[float] = []
    barrier.wait(timeout=300)  # every writer set up: they start together
    started = time.monotonic()  # system-wide: comparable across the writers
    while time.monotonic() - started < seconds:
        with counter.get_lock():
            if counter.value >= target:
                break
            counter.value += 1
        begun = time.perf_counter()
        append()
        latencies.append((time.perf_counter() - begun) * 1000)
    results.put((started, time.monotonic(), latencies))


def _processes_run(target: Any, writers: int, appends: int, seconds: float) -> dict[str, object]:
    """`writers` processes running `target` (a writer) for `appends` between them (or for
    `seconds`): their rate and latencies."""
    spawn = multiprocessing.get_context("spawn")
    barrier, counter, results = spawn.Barrier(writers), spawn.Value("l", 0), spawn.Queue()
    processes = [
        spawn.Process(target=target, args=(barrier, counter, appends, seconds, results))
        for _ in range(writers)
    ]
    for process in processes:
        process.start()
    finished: list[tuple[float, float, list[float]]] = []
    deadline = time.monotonic() + seconds + 300
    while len(finished) < writers:
        try:
            finished.append(results.get(timeout=1))
        except queue.Empty:
            if time.monotonic() > deadline or any(process.exitcode not in (None, 0) for process in processes):
                for process in processes:
                    process.kill()
                raise RuntimeError("a concurrent writer failed or hung") from None
    for process in processes:
        process.join(timeout=60)
    latencies = [latency for _, _, each in finished for latency in each]
    elapsed = max(end for _, end, _ in finished) - min(start for start, _, _ in finished)
    return {"writers": writers, "processes": True, **_rate(latencies, elapsed)}


FLOOR_TABLE = "bench_audit_floor"
# Connection parameters Django hands psycopg that are not libpq's (the floor keeps psycopg's
# defaults for them, as any plain client would).
_PSYCOPG_ONLY = frozenset({"cursor_factory", "context", "prepare_threshold"})


@dataclass(frozen=True)
class _FloorRows:
    """What each of the floor's writers inserts, and where."""

    conninfo: str
    statement: str
    row: tuple[Any, ...]
    uuid_at: int  # the row's unique column: a new uuid each time


def _floor_writer(
    barrier: Any, counter: Any, target: int, seconds: float, results: Any, *, rows: _FloorRows
) -> None:
    """One of the floor's writers (see the module): psycopg alone, BEGIN, INSERT and COMMIT
    for each row, as a Django transaction sends them, each row with a uuid of its own."""
    import uuid

    import psycopg

    values = list(rows.row)
    with psycopg.connect(rows.conninfo) as connection:

        def append() -> None:
            values[rows.uuid_at] = uuid.uuid4()
            with connection.transaction():
                connection.execute(rows.statement, values)

        _appends_timed(barrier, counter, target, seconds, results, append=append)


def _floor_appends(writers: int, appends: int, seconds: float) -> dict[str, object]:
    """`writers` processes appending `appends` plain rows between them (or for `seconds`)."""
    from django.db import connection
    from psycopg.conninfo import make_conninfo

    from audit.models import AuditEvent
    from audit.services import audit_event_build, insert_fields, insert_statement

    if connection.vendor != "postgresql":
        return {"not_measured": "the floor is measured on PostgreSQL only"}
    table = AuditEvent._meta.db_table
    event = audit_event_build(action="bench.floor", metadata={"n": 1})
    names = [field.attname for field in insert_fields()]
    # Plain values (a choice is a str subclass of Django's): the writers load no Django.
    row = tuple(
        str(value) if isinstance(value, str) else value for value in map(event.__getattribute__, names)
    )
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {FLOOR_TABLE}")
        cursor.execute(f"CREATE TABLE {FLOOR_TABLE} (LIKE {table} INCLUDING ALL)")
    # Django's own connection parameters, but for what only its psycopg connections take.
    parameters = connection.get_connection_params()
    conninfo = make_conninfo(
        **{name: value for name, value in parameters.items() if name not in _PSYCOPG_ONLY}
    )
    statement = insert_statement().replace(f"INTO {table} ", f"INTO {FLOOR_TABLE} ", 1)
    connection.close()  # not carried into the writers' processes
    try:
        rows = _FloorRows(conninfo=conninfo, statement=statement, row=row, uuid_at=names.index("uuid"))
        run = _processes_run(functools.partial(_floor_writer, rows=rows), writers, appends, seconds)
        return {"python_alone": True, **run}
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {FLOOR_TABLE}")


def _request_path_appends(writers: int, appends: int, seconds: float) -> dict[str, object]:
    """`writers` coroutines appending `appends` events between them (or for `seconds`), as the
    chat pipeline does (see the module); where that path is off (SQLite), why it was not run."""
    from audit.appender import audit_appender_close, audit_appends_direct, audit_event_append_async
    from audit.services import audit_event_build

    if not audit_appends_direct():
        return {"not_measured": "appends from an event loop go straight to PostgreSQL only"}

    async def run() -> tuple[float, list[float]]:
        latencies: list[float] = []
        remaining = appends

        async def writer() -> None:
            nonlocal remaining
            while remaining > 0 and time.monotonic() - started < seconds:
                remaining -= 1
                begun = time.perf_counter()
                event = audit_event_build(action="bench.request_path", metadata={"n": 1})
                await audit_event_append_async(event=event)
                latencies.append((time.perf_counter() - begun) * 1000)

        started = time.monotonic()
        await asyncio.gather(*(writer() for _ in range(writers)))
        elapsed = time.monotonic() - started
        await audit_appender_close()
        return elapsed, latencies

    elapsed, latencies = asyncio.run(run())
    return {"writers": writers, "event_loop": True, **_rate(latencies, elapsed)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--appends", type=int, default=1000, help="P6a's appends (0: skip P6a)")
    parser.add_argument("--events", type=int, default=100_000, help="the chain to fill and verify")
    parser.add_argument("--seconds", type=float, default=180, help="at most this long filling it")
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--request-path-appends", type=int, default=30_000, help="0: skip that run")
    parser.add_argument("--floor-appends", type=int, default=30_000, help="0: skip the floor")
    args = parser.parse_args()
    _django_setup()
    from django.db import connection

    from audit.models import AuditEvent
    from audit.sealing import audit_seal_pending
    from audit.verification import audit_chain_verify

    costs = _append_costs(args.appends) if args.appends else None
    # At least a few appends per writer, so the rate is the writers' even on a full chain.
    missing = max(args.events - AuditEvent.objects.count(), 10 * args.writers)
    connection.close()  # not carried into the writers' processes
    concurrent = _processes_run(_writer, args.writers, missing, args.seconds)
    request_path = (
        _request_path_appends(args.writers, args.request_path_appends, args.seconds)
        if args.request_path_appends
        else None
    )
    floor = _floor_appends(args.writers, args.floor_appends, args.seconds) if args.floor_appends else None
    audit_seal_pending()  # what the writers' sealers had not reached yet
    links_only = audit_chain_verify(personal=False)
    full = audit_chain_verify(personal=True)
    print(
        json.dumps(
            {
                "database": connection.vendor,
                **({"append": costs} if costs is not None else {}),
                "concurrent": concurrent,
                **({"request_path": request_path} if request_path is not None else {}),
                **({"floor": floor} if floor is not None else {}),
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

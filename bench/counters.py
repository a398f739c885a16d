"""P9: Redis commands and database transactions per streamed gateway request, steady state.

Counted, not timed, read before and after `requests` streamed requests at concurrency 1
(after a warm-up of as many):
- Redis, two ways. `INFO commandstats` (calls per command) counts the whole Redis server:
  every database, every client (other suites' stacks included), and the commands scripts
  run. So a MONITOR connection also counts the commands of the stack's own processes (web
  server and worker, known by their connections' addresses) and of the scripts they ran:
  their sum is what P9a measures (commandstats' way of counting, without anyone else's).
  The round trips (a script once) are reported beside it.
- PostgreSQL's `pg_stat_database`: xact_commit + xact_rollback of the stack's own database.
The same counters are read over an idle window just before, of the same length, and that
background (the worker polling its broker, autovacuum, anything periodic; for commandstats,
everyone else on the server) is taken off, scaled to the measured window's length: the report
keeps raw, background and net. The audit sealers' looks, the one periodic transaction, are
counted by the sealers themselves (`gatehouse_audit_sealer_looks`, in the metrics files the
stack's processes share) and taken off exactly, window by window.

Reading the counters right:
- commandstats counts a command once it has run, so each reading's own INFO lands in the
  next window: one `info` call is taken off every window. MONITOR's count never holds it
  (the reading connection is not the stack's); it does report, apart, commands others sent
  on the stack's Redis database: not zero means another stack shares it (tests.e2e.server
  gives each process's first stack the database below REDIS_URL's).
- PostgreSQL 15+ keeps statistics in shared memory, flushed by each backend at most once a
  second while it is busy, and by an idle one within PGSTAT_IDLE_INTERVAL (10 s).
  `pg_stat_force_next_flush()` flushes only the calling session's, not the gateway's
  connections', so every reading comes after the stack has been idle for SETTLE_SECONDS,
  and the window between two readings includes that wait. The readings are taken from the
  maintenance database, so they add nothing to the stack's counts, and after
  `pg_stat_clear_snapshot()`, so none is served from a cached snapshot.
"""

import asyncio
import re
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse, urlunparse

import httpx

from bench.processes import connection_ports, served_roles
from bench.report import Goal, Row
from bench.sides import Side, request_once
from tests.e2e.server import ServedGatehouse, maintenance_database_url

P9_REDIS_GOAL = 3
P9_TRANSACTIONS_GOAL = 1
# Streamed requests counted. Periodic work comes in whole transactions that land in one window
# or the other: over 200 requests one more or fewer moves the figure by 0.005, over 50 by 0.02
# (the audit sealers' looks, once a second idle or busy, are counted and taken off exactly).
P9_REQUESTS = 200
# PostgreSQL 15+'s PGSTAT_IDLE_INTERVAL (10 s), and a margin.
SETTLE_SECONDS = 11.0
# Before 15 the statistics collector took reports at most every 500 ms and an idle backend's
# last one could wait for its next transaction: the figure is then a lower bound.
SETTLE_SECONDS_BEFORE_15 = 2.0
POSTGRESQL_15 = 150000  # server_version_num


# A MONITOR line: `+1700000000.123456 [14 127.0.0.1:51234] "GET" "key"`; `[14 lua]` for a script's.
_MONITOR_LINE = re.compile(rb'^\+\d+\.\d+ \[(\d+) ([^\]]+)\] "([^"]*)"')


def _resp(*words: str) -> bytes:
    encoded = [word.encode() for word in words]
    return b"*%d\r\n" % len(encoded) + b"".join(b"$%d\r\n%s\r\n" % (len(word), word) for word in encoded)


@dataclass
class MonitorCounts:
    """Commands by name: sent by the stack's processes, run by the scripts they sent (`lua`),
    and sent on the stack's database by anyone else (another stack on the same database)."""

    sent: Counter[str] = field(default_factory=Counter)
    scripted: Counter[str] = field(default_factory=Counter)
    foreign: Counter[str] = field(default_factory=Counter)

    def copy(self) -> "MonitorCounts":
        return MonitorCounts(Counter(self.sent), Counter(self.scripted), Counter(self.foreign))


class RedisMonitor:
    """Counts, from a MONITOR connection, the Redis commands the stack's processes send.

    A MONITOR line names the client's address; the stack's own are its processes' connections
    to Redis (read from /proc, again when an address is new). Scripts' commands (`lua`) follow
    the EVAL that ran them and are counted apart: P9 is about round trips.
    """

    def __init__(self, redis_url: str, pids: list[int]) -> None:
        url = urlparse(redis_url)
        self.database = (url.path.strip("/") or "0").encode()
        self.counts = MonitorCounts()
        self._pids, self._redis_port = pids, url.port or 6379
        self._ours: set[int] = set()
        self._theirs: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._socket = socket.create_connection((url.hostname or "127.0.0.1", self._redis_port), timeout=5)
        if url.password:
            self._socket.sendall(_resp("AUTH", *filter(None, (url.username, url.password))))
        self._socket.sendall(_resp("MONITOR"))
        self._socket.settimeout(0.5)
        self._thread = threading.Thread(target=self._read, name="redis-monitor", daemon=True)
        self._thread.start()

    def _is_ours(self, address: bytes) -> bool:
        port = int(address.rpartition(b":")[2] or 0)
        if port not in self._ours and port not in self._theirs:
            self._ours = connection_ports(self._pids, remote_port=self._redis_port)
            if port not in self._ours:
                self._theirs.add(port)
        return port in self._ours

    def _read(self) -> None:
        pending, last_client_ours = b"", False
        while not self._stop.is_set():
            try:
                data = self._socket.recv(1 << 16)
            except TimeoutError:
                continue
            if not data:
                return
            *lines, pending = (pending + data).split(b"\r\n")
            for line in lines:
                match = _MONITOR_LINE.match(line)
                if match is None:
                    continue
                database, client, command = match[1], match[2], match[3].decode().lower()
                if client == b"lua":
                    counter = self.counts.scripted if last_client_ours else None
                else:
                    last_client_ours = self._is_ours(client)
                    counter = self.counts.sent if last_client_ours else None
                    if not last_client_ours and database == self.database:
                        counter = self.counts.foreign
                if counter is not None:
                    with self._lock:
                        counter[command] += 1

    def read(self) -> MonitorCounts:
        """The counts so far."""
        with self._lock:
            return self.counts.copy()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._socket.close()


@dataclass
class Reading:
    at: float
    redis_calls: Counter[str]
    transactions: int
    monitor: MonitorCounts
    # Counted by the stack's processes themselves, each a transaction: the background
    # sealers' looks, and the request path's reloads of what its caches did not hold.
    sealer_looks: float = 0.0
    cache_reloads: float = 0.0


SEALER_LOOKS = "gatehouse_audit_sealer_looks_total"
CACHE_RELOADS = "gatehouse_local_cache_reloads_total"


def stack_counts(metrics_directory: str) -> dict[str, float]:
    """Every counter of the stack's processes (web server and worker) summed, by sample name,
    from the metrics files they share (PROMETHEUS_MULTIPROC_DIR)."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=metrics_directory)  # type: ignore[no-untyped-call]
    counts: dict[str, float] = {}
    for metric in registry.collect():
        if metric.type == "counter":
            for sample in metric.samples:
                counts[sample.name] = counts.get(sample.name, 0.0) + sample.value
    return counts


class StackCounters:
    """The production-like stack's Redis server and its PostgreSQL database's counters."""

    def __init__(self, served: ServedGatehouse) -> None:
        import psycopg
        import redis

        # INFO is the server's whatever the database: read it from another than the stack's.
        redis_url = urlparse(served.env["REDIS_URL"])
        other = (int(redis_url.path.strip("/") or 0) + 1) % 16
        self.redis = redis.Redis.from_url(urlunparse(redis_url._replace(path=f"/{other}")))
        roles = served_roles(served)
        self.monitor = RedisMonitor(served.env["REDIS_URL"], roles["web"] + roles["worker"])
        self.database = urlparse(served.env["DATABASE_URL"]).path.strip("/")
        self.metrics_directory = served.env["PROMETHEUS_MULTIPROC_DIR"]
        self.postgres = psycopg.connect(maintenance_database_url(served.env["DATABASE_URL"]), autocommit=True)
        self.server_version = self.postgres.info.server_version
        self.settle_seconds = (
            SETTLE_SECONDS if self.server_version >= POSTGRESQL_15 else SETTLE_SECONDS_BEFORE_15
        )

    def read(self) -> Reading:
        """The counters now: Redis calls by command, and the stack database's transactions."""
        stats = self.redis.info("commandstats")
        calls = Counter(
            {name.removeprefix("cmdstat_"): int(figures["calls"]) for name, figures in stats.items()}
        )
        self.postgres.execute("SELECT pg_stat_clear_snapshot()")
        row = self.postgres.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s", (self.database,)
        ).fetchone()
        if row is None:
            raise RuntimeError(f"pg_stat_database has no row for {self.database}")
        counts = stack_counts(self.metrics_directory)
        return Reading(
            at=time.monotonic(),
            redis_calls=calls,
            transactions=int(row[0]),
            monitor=self.monitor.read(),
            sealer_looks=counts.get(SEALER_LOOKS, 0.0),
            cache_reloads=counts.get(CACHE_RELOADS, 0.0),
        )

    def close(self) -> None:
        self.monitor.close()
        self.redis.close()
        self.postgres.close()


def _moved(before: Counter[str], after: Counter[str]) -> Counter[str]:
    moved = Counter(after)
    moved.subtract(before)
    return +moved


@dataclass
class Window:
    """What the counters moved by between two readings."""

    seconds: float
    redis_calls: Counter[str]
    sent: Counter[str]
    scripted: Counter[str]
    foreign: Counter[str]
    transactions: int
    sealer_looks: float = 0.0
    cache_reloads: float = 0.0

    @classmethod
    def between(cls, before: Reading, after: Reading) -> "Window":
        calls = _moved(before.redis_calls, after.redis_calls)
        calls["info"] -= 1  # `before`'s own INFO
        return cls(
            seconds=after.at - before.at,
            redis_calls=+calls,
            sent=_moved(before.monitor.sent, after.monitor.sent),
            scripted=_moved(before.monitor.scripted, after.monitor.scripted),
            foreign=_moved(before.monitor.foreign, after.monitor.foreign),
            transactions=after.transactions - before.transactions,
            sealer_looks=after.sealer_looks - before.sealer_looks,
            cache_reloads=after.cache_reloads - before.cache_reloads,
        )


def _net(idle: Counter[str], measured: Counter[str], *, scale: float, requests: int) -> dict[str, Any]:
    """Raw, background (the idle window's, scaled) and net counts, in all and by command."""
    background = {name: calls * scale for name, calls in idle.items()}
    net = {name: measured[name] - background.get(name, 0) for name in measured.keys() | background.keys()}
    per_request = {name: round(calls / requests, 3) for name, calls in net.items()}
    return {
        "raw": sum(measured.values()),
        "background": round(sum(background.values()), 1),
        "net": round(sum(net.values()), 1),
        "net_per_request": round(sum(net.values()) / requests, 3),
        "raw_by_command": dict(measured.most_common()),
        "background_by_command": {name: round(calls, 1) for name, calls in background.items()},
        "net_per_request_by_command": dict(
            sorted(((name, value) for name, value in per_request.items() if value), key=lambda item: -item[1])
        ),
    }


def _streamed(side: Side, requests: int) -> float:
    """`requests` streamed requests at concurrency 1; their wall time in seconds."""

    async def run() -> float:
        async with httpx.AsyncClient(timeout=60) as client:
            started = time.monotonic()
            for _ in range(requests):
                await request_once(client, side, stream=True)
            return time.monotonic() - started

    return asyncio.run(run())


def count_p9(served: ServedGatehouse, side: Side, *, requests: int) -> dict[str, Any]:
    """The counts behind P9: an idle window, then `requests` streamed requests in one as long."""
    counters = StackCounters(served)
    try:
        warm = _streamed(side, requests)
        length = warm + counters.settle_seconds
        time.sleep(counters.settle_seconds)  # the warm-up's counts flushed
        start = counters.read()
        time.sleep(length)
        idle_end = counters.read()
        took = _streamed(side, requests)
        time.sleep(max(counters.settle_seconds, length - took))
        end = counters.read()
    finally:
        counters.close()
    idle, measured = Window.between(start, idle_end), Window.between(idle_end, end)
    scale = measured.seconds / idle.seconds
    return {
        "requests": requests,
        "postgresql_version": counters.server_version,
        "settle_s": counters.settle_seconds,
        "idle_window_s": round(idle.seconds, 2),
        "measured_window_s": round(measured.seconds, 2),
        "redis": {
            "scope": "commands the stack's web server and worker ran on Redis, counted as commandstats "
            "counts them (a script's commands too), from MONITOR by client address",
            **_net(
                idle.sent + idle.scripted, measured.sent + measured.scripted, scale=scale, requests=requests
            ),
            # A script (EVAL, EVALSHA) once: what the stack waited on.
            "round_trips": _net(idle.sent, measured.sent, scale=scale, requests=requests),
            "scripted": _net(idle.scripted, measured.scripted, scale=scale, requests=requests),
            # Not the stack's: another stack sharing its Redis database, if this is not empty.
            f"others_on_database_{counters.monitor.database.decode()}": {
                "idle": dict(idle.foreign.most_common()),
                "measured": dict(measured.foreign.most_common()),
            },
            "commandstats": {
                "scope": "the whole Redis server (INFO commandstats): every database and client, scripts' "
                "commands included; the readings' own INFO taken off",
                **_net(idle.redis_calls, measured.redis_calls, scale=scale, requests=requests),
            },
        },
        "transactions": transactions_net(idle, measured, requests=requests),
    }


def transactions_net(idle: Window, measured: Window, *, requests: int) -> dict[str, Any]:
    """The stack database's transactions in the measured window, less the background sealers'
    looks in it (counted by the sealers themselves), less what else the idle window ran (scaled
    to the measured window's length); per request.

    The sealers look once a second, idle or busy, each look one transaction: estimated from
    the idle window, they moved the figure by a look or two either way (the two windows hold a
    whole number of them, and PostgreSQL reports a busy connection's counts up to a second
    late). Counted, they come off exactly; the old estimate is reported beside.

    The request path's own reloads are reported too, not taken off: they are requests' work,
    but come once a minute (the caches' lapse, two transactions; a key's last use, one), so a
    window holds some or none of them.
    """
    scale = measured.seconds / idle.seconds
    other_background = (idle.transactions - idle.sealer_looks) * scale
    net = measured.transactions - measured.sealer_looks - other_background
    estimated_net = measured.transactions - idle.transactions * scale
    return {
        "scope": "xact_commit + xact_rollback of the stack's database (pg_stat_database), less the "
        "background sealers' looks (their own count) and other background (the idle window's)",
        "raw": measured.transactions,
        "sealer_looks": round(measured.sealer_looks, 1),
        "other_background": round(other_background, 1),
        "net": round(net, 1),
        "net_per_request": round(net / requests, 3),
        "cache_reloads": round(measured.cache_reloads, 1),
        "net_per_request_less_cache_reloads": round((net - measured.cache_reloads) / requests, 3),
        "idle_window": {
            "transactions": idle.transactions,
            "sealer_looks": round(idle.sealer_looks, 1),
            "cache_reloads": round(idle.cache_reloads, 1),
        },
        "net_per_request_with_sealers_estimated_from_the_idle_window": round(estimated_net / requests, 3),
    }


def goals_p9(counts: dict[str, Any] | None, *, reason: str = "") -> list[Goal]:
    """P9a (Redis commands) and P9b (database transactions); not measured without `counts`.

    P9a counts the commands the stack sent, a script once (the issue's "<= 3 Redis commands,
    or one pipelined script": a script's inner commands run inside Redis, in the one round
    trip); the count with the scripts' inner commands (commandstats' way) is reported beside.
    """
    goals = [
        Goal(id="P9a", measure="Redis commands the stack sent per streamed gateway request, steady state "
             "(a script once; net of background)", goal=f"<= {P9_REDIS_GOAL}", anchor="-"),
        Goal(id="P9b", measure="database transactions per streamed gateway request, steady state (net of "
             "background)", goal=f"<= {P9_TRANSACTIONS_GOAL}", anchor="-"),
    ]  # fmt: skip
    if counts is None:
        for goal in goals:
            goal.details = {"not_measured": reason}
        return goals
    for goal, figures, limit in zip(
        goals,
        (counts["redis"]["round_trips"], counts["transactions"]),
        (P9_REDIS_GOAL, P9_TRANSACTIONS_GOAL),
        strict=True,
    ):
        goal.measured = float(figures["net_per_request"])
        goal.met = goal.measured <= limit
    goals[0].details = {**counts["redis"], **_context(counts)}
    goals[1].details = {**counts["transactions"], **_context(counts)}
    return goals


def _context(counts: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in counts.items() if name not in ("redis", "transactions")}


def p9_rows(goals: list[Goal]) -> list[Row]:
    """The gateway's P9 counts as rows of the side-by-side table, and the Redis commands with
    the scripts' inner ones beside."""
    rows = []
    for goal in goals:
        what = "Redis commands sent (a script once)" if goal.id == "P9a" else "DB transactions"
        rows.append(
            Row(measure=f"streamed, concurrency 1: {what} per request (net)", unit="count",
                gateway=goal.measured, goal=f"P9: {goal.goal}")
        )  # fmt: skip
        commands_run = goal.details.get("net_per_request") if goal.id == "P9a" else None
        if isinstance(commands_run, int | float):
            rows.append(
                Row(measure="streamed, concurrency 1: Redis commands run, scripts' inner ones included "
                    "(net)", unit="count", gateway=float(commands_run))
            )  # fmt: skip
    return rows

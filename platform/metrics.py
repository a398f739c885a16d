"""Prometheus instruments: what the web tier and the workers count as they work.

Values live in the process that records them. With PROMETHEUS_MULTIPROC_DIR set (every
deployment that runs more than one process: uvicorn workers, Celery's pool, a worker beside
the web server on one host), each process writes its own files there and `/metrics` sums
them (gatehouse.metrics_export). Label values are bounded sets (route patterns, model
names, outcome codes), never ids or paths, so the series count stays small.
"""

import os

from prometheus_client import Counter, Gauge, Histogram, multiprocess

# Seconds, from a cached GET (~ms) to a long generation (minutes).
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

HTTP_REQUESTS = Counter(
    "gatehouse_http_requests", "HTTP requests answered, by route pattern, method and status.",
    ["route", "method", "status"],
)  # fmt: skip
HTTP_LATENCY = Histogram(
    "gatehouse_http_request_duration_seconds", "Time to answer an HTTP request (to the first byte of a stream).",
    ["route", "method"], buckets=_LATENCY_BUCKETS,
)  # fmt: skip
GENERATIONS = Counter(
    "gatehouse_generations",
    "Generations ended, by model, channel and outcome.",
    ["model", "channel", "outcome"],
)
TOKENS_GENERATED = Counter(
    "gatehouse_tokens_generated", "Completion tokens generated, by model and channel.", ["model", "channel"]
)
TIME_TO_FIRST_TOKEN = Histogram(
    "gatehouse_time_to_first_token_seconds", "From the request's arrival to its first token, by model.",
    ["model"], buckets=_LATENCY_BUCKETS,
)  # fmt: skip
# The wait in the model's queue: from the web tier queuing a generation to a worker starting it.
QUEUE_WAIT = Histogram(
    "gatehouse_queue_wait_seconds", "From a generation being queued to a worker starting it, by model.",
    ["model"], buckets=_LATENCY_BUCKETS,
)  # fmt: skip
GENERATION_LATENCY = Histogram(
    "gatehouse_generation_duration_seconds", "From the request's arrival to its last token, by model.",
    ["model"], buckets=_LATENCY_BUCKETS,
)  # fmt: skip
# livesum: a process that exits takes its streams with it (its file is marked dead).
ACTIVE_STREAMS = Gauge(
    "gatehouse_active_streams", "Generations running now, by model.", ["model"], multiprocess_mode="livesum"
)
WEBSOCKETS_OPEN = Gauge(
    "gatehouse_websockets_open", "Chat websocket connections open now.", multiprocess_mode="livesum"
)
QUOTA_REJECTIONS = Counter(
    "gatehouse_quota_rejections", "Requests refused by a quota or rate limit, by code.", ["code"]
)
# Every refused attempt; the audit trail records only the first of each lockout.
LOGINS_BLOCKED = Counter(
    "gatehouse_logins_blocked",
    "Login attempts refused by a lockout, by what is locked (account-address, address, account).",
    ["scope"],
)

# gatehouse.database_calls: a request that found governance state missing from the in-process
# caches (they lapse together once a GATEHOUSE_LOCAL_CACHE_SECONDS; an announced change empties
# them; a key's last use is written once a minute) and went to the database for it.
LOCAL_CACHE_RELOADS = Counter(
    "gatehouse_local_cache_reloads",
    "Request-path reloads of governance state the in-process caches did not hold, each one "
    "database transaction.",
)

# The audit sealer (audit.sealing): events linked into the hash chain, and rows it refused to
# link because they no longer matched their digest (tampered before sealing; any is an alarm).
AUDIT_EVENTS_SEALED = Counter("gatehouse_audit_events_sealed", "Audit events linked into the hash chain.")
# Each look of a background sealer that opened a transaction (on PostgreSQL, every look; on
# SQLite, only those that found rows pending): what the sealer costs the database, idle or busy.
AUDIT_SEALER_LOOKS = Counter(
    "gatehouse_audit_sealer_looks",
    "Background sealer looks at the pending audit rows, each one database transaction.",
)
AUDIT_EVENTS_REFUSED = Counter(
    "gatehouse_audit_events_refused",
    "Audit rows the sealer refused to chain: their contents no longer match their digest (tampering).",
)


# inference.engines.circuit_breaker: each upstream's breaker opening and closing.
UPSTREAM_BREAKER_TRANSITIONS = Counter(
    "gatehouse_upstream_breaker_transitions",
    "Circuit breaker transitions of remote upstreams, by upstream and the state entered (open, closed).",
    ["upstream", "state"],
)
# 1 while this process's breaker for the upstream is open (its last transition); in multiprocess
# mode the last transition any live process made wins, so a trial's closing clears an opening.
UPSTREAM_CIRCUIT_OPEN = Gauge(
    "gatehouse_upstream_circuit_open", "1 while the upstream's circuit breaker is open, else 0.",
    ["upstream"], multiprocess_mode="livemostrecent",
)  # fmt: skip


def metrics_process_exited() -> None:
    """Drop this process's live gauges (open streams, sockets) from the shared directory.

    Called as a web or worker process ends; without it, a restarted process's last values
    would be summed into the live gauges forever.
    """
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]

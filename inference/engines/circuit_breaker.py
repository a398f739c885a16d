"""The circuit breaker every call to one upstream goes through, shared by every process.

After `threshold` failures in a row a breaker opens: calls to its upstream are refused at once
(the upstream is failing) for `reset_seconds`; then one call may try (half-open), and its
success closes the breaker, its failure opens it again.

Shared: opening a breaker also sets a Redis key that lives `reset_seconds`
(`gatehouse:breaker:<upstream>`). A process whose own breaker is closed reads that key at most
every `SHARED_READ_SECONDS` per upstream (on a call's way out, never waiting on it for long)
and opens for what is left of it: a failing upstream found by one process is skipped by every
process within a second, not rediscovered by each. A trial's success deletes the key. Without
Redis (the embedded default) a breaker is its process's own. Redis out of reach never holds a
call up: the breaker goes on with what this process knows.

Every opening and closing is counted in `/metrics` (`gatehouse_upstream_breaker_transitions`,
by upstream and state; `gatehouse_upstream_circuit_open` is 1 while open) and audited
(`upstream.breaker_opened` / `upstream.breaker_closed`, written in order by one thread per
process, off the request's path).
"""

import hashlib
import logging
import queue
import threading
import time
from typing import Any

import redis
from django.conf import settings

from gatehouse.metrics import UPSTREAM_BREAKER_TRANSITIONS, UPSTREAM_CIRCUIT_OPEN

logger = logging.getLogger(__name__)

# How often a closed breaker asks whether another process opened it.
SHARED_READ_SECONDS = 1.0
_KEY_PREFIX = "gatehouse:breaker:"
# Redis answers within this, or the breaker goes on without it.
_REDIS_TIMEOUT_SECONDS = 0.25


class CircuitBreaker:
    """Open after `threshold` consecutive failures; after `reset_seconds` let one request try.

    `upstream` names it, in metrics, audit records and the shared key (None: this process's
    own, never shared: engines built by hand, tests).
    """

    def __init__(
        self, *, threshold: int = 5, reset_seconds: float = 30.0, upstream: str | None = None
    ) -> None:
        self.threshold = threshold
        self.reset_seconds = reset_seconds
        self.upstream = upstream
        self.failures = 0
        self.opened_at: float | None = None
        self._read_at = float("-inf")
        self._lock = threading.Lock()

    def allow(self) -> bool:
        with self._lock:
            self._shared_catch_up()
            if self.opened_at is None:
                return True
            if time.monotonic() - self.opened_at >= self.reset_seconds:
                self.opened_at = time.monotonic()  # half-open: this caller tries, others wait again
                return True
            return False

    def succeeded(self) -> None:
        with self._lock:
            was_open = self.opened_at is not None
            self.failures = 0
            self.opened_at = None
        if was_open:
            self._shared_clear()
            self._transition("closed")

    def failed(self) -> None:
        with self._lock:
            self.failures += 1
            tripped = self.failures >= self.threshold
            opening = tripped and self.opened_at is None
            if tripped:
                self.opened_at = time.monotonic()
        if tripped:  # opened, or a trial failed: every process pauses again
            self._shared_open()
        if opening:
            self._transition("open")

    def state(self) -> str:
        """Answering or paused, in words (the shared state read if it is due)."""
        with self._lock:
            self._shared_catch_up()
            opened_at, failures = self.opened_at, self.failures
        if opened_at is not None:
            left = max(0.0, self.reset_seconds - (time.monotonic() - opened_at))
            return f"paused: circuit open ({left:.0f} s before a trial)"
        return "answering" if failures == 0 else f"answering ({failures} failure(s) in a row)"

    # --- the shared state ---------------------------------------------------------------------

    def _key(self) -> str | None:
        if self.upstream is None or not settings.REDIS_URL:
            return None
        return _KEY_PREFIX + hashlib.sha256(self.upstream.encode()).hexdigest()[:32]

    def _shared_catch_up(self) -> None:
        """A closed breaker learns, when it is due, whether another process opened it (under
        the lock)."""
        if self.opened_at is None and self._shared_due():
            self._shared_read()

    def _shared_due(self) -> bool:
        now = time.monotonic()
        if self._key() is None or now - self._read_at < SHARED_READ_SECONDS:
            return False
        self._read_at = now
        return True

    def _shared_read(self) -> None:
        """Open for what is left of another process's opening, if there is one."""
        key = self._key()
        try:
            left_ms = int(_redis().pttl(key)) if key else -2
        except redis.RedisError as exc:
            logger.warning("circuit breaker of %s: its shared state cannot be read (%s)", self.upstream, exc)
            return
        if left_ms > 0:
            self.opened_at = time.monotonic() - max(0.0, self.reset_seconds - left_ms / 1000)

    def _shared_open(self) -> None:
        key = self._key()
        if key is None:
            return
        try:
            _redis().set(key, "open", px=max(1, int(self.reset_seconds * 1000)))
        except redis.RedisError as exc:
            logger.warning("circuit breaker of %s: its opening cannot be shared (%s)", self.upstream, exc)

    def _shared_clear(self) -> None:
        key = self._key()
        if key is None:
            return
        try:
            _redis().delete(key)
        except redis.RedisError as exc:
            logger.warning("circuit breaker of %s: its closing cannot be shared (%s)", self.upstream, exc)

    def _transition(self, state: str) -> None:
        if self.upstream is None:
            return
        UPSTREAM_BREAKER_TRANSITIONS.labels(upstream=self.upstream, state=state).inc()
        UPSTREAM_CIRCUIT_OPEN.labels(upstream=self.upstream).set(1 if state == "open" else 0)
        # An audit write is a database write: never on the caller's path (an event loop, often).
        _transition_queue(upstream=self.upstream, state=state, failures=self.failures)


_client: Any = None
_client_lock = threading.Lock()


def _redis() -> Any:
    global _client  # noqa: PLW0603 - one client per process, made at first use
    with _client_lock:
        if _client is None:
            _client = redis.Redis.from_url(
                settings.REDIS_URL,
                socket_timeout=_REDIS_TIMEOUT_SECONDS,
                socket_connect_timeout=_REDIS_TIMEOUT_SECONDS,
            )
        return _client


# Transitions to audit, in the order they happened, written by one thread per process.
_transitions: "queue.SimpleQueue[dict[str, Any]]" = queue.SimpleQueue()
_recorder: threading.Thread | None = None


def _transition_queue(**transition: Any) -> None:
    global _recorder  # noqa: PLW0603 - one recorder per process, started at the first transition
    _transitions.put(transition)
    with _client_lock:
        if _recorder is None or not _recorder.is_alive():
            _recorder = threading.Thread(
                target=_transitions_record, name="gatehouse-breaker-audit", daemon=True
            )
            _recorder.start()


def _transitions_record() -> None:
    from django.db import close_old_connections

    from audit.services import audit_event_record

    while True:
        transition = _transitions.get()
        upstream, state = transition["upstream"], transition["state"]
        try:
            audit_event_record(
                action="upstream.breaker_opened" if state == "open" else "upstream.breaker_closed",
                target_type="upstream",
                target_id=upstream[:200],
                target_display=upstream[:200],
                metadata={"failures": transition["failures"]} if state == "open" else {},
            )
        except Exception:
            logger.exception(
                "the circuit breaker's %s transition for %s could not be audited", state, upstream
            )
        finally:
            close_old_connections()


_breakers: dict[str, CircuitBreaker] = {}
_breakers_lock = threading.Lock()


def circuit_breaker_for(*, base_url: str, threshold: int, reset_seconds: float) -> CircuitBreaker:
    """The process's one breaker for the upstream at `base_url` (shared with every process)."""
    with _breakers_lock:
        breaker = _breakers.get(base_url)
        if breaker is None:
            breaker = _breakers[base_url] = CircuitBreaker(
                threshold=threshold, reset_seconds=reset_seconds, upstream=base_url
            )
        return breaker


def circuit_breaker_state(*, base_url: str) -> str:
    """How the upstream at `base_url` stands, as this process's breaker and the shared key
    say: for the console."""
    with _breakers_lock:
        breaker = _breakers.get(base_url)
    return "not called by this process yet" if breaker is None else breaker.state()

"""Cancel flags for running generations, shared through the cache.

The cache is process-local on the embedded default (where generations run in-process) and
Redis in production (where they run on Celery workers), so a flag set by the web tier is
seen wherever the generation runs.

Where a generation runs, it does not ask for its own flag: `generation_cancel_watch` hands it
an event, and one thread per process reads the flags of every generation it watches in one
cache read (one MGET on Redis) every `WATCH_POLL_SECONDS`. Eight streams on a worker cost
one read per poll instead of eight, and their threads do no Python work to ask (work that
took the interpreter lock from the decoding loop beside them).
"""

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from django.core.cache import cache
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

_TTL_SECONDS = 15 * 60
# How often the watching thread reads the flags of the generations it watches.
WATCH_POLL_SECONDS = 0.02
# After a failed read, how long before the next try (and at most one warning per failure run).
_RETRY_SECONDS = 1.0


def _key(generation_id: str) -> str:
    return f"inference:cancel:{generation_id}"


def generation_cancel_request(*, generation_id: str) -> None:
    """Raise the flag; with the cache unreachable, only log it. A flag raised late would be
    no use, and the outage that stops the flag also breaks the generation's relay (the same
    Redis), which stops the generation."""
    try:
        cache.set(_key(generation_id), True, timeout=_TTL_SECONDS)
    except RedisError as error:
        logger.warning("generation %s: could not raise its cancel flag (%s)", generation_id, error)


def generation_cancel_requested(*, generation_id: str) -> bool:
    """One read of the flag (callers that wait on a generation use `generation_cancel_watch`)."""
    return bool(cache.get(_key(generation_id), False))


class _CancelWatcher:
    """The process's one thread that reads every watched generation's flag together."""

    def __init__(self) -> None:
        # Each generation id watched, with the events of its watchers (a test may watch twice).
        self._watched: dict[str, list[threading.Event]] = {}
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def watch(self, generation_id: str) -> threading.Event:
        event = threading.Event()
        with self._changed:
            self._watched.setdefault(generation_id, []).append(event)
            # A forked child inherits the dict but not the thread: start one of its own.
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="gatehouse-cancel-watch", daemon=True)
                self._thread.start()
            self._changed.notify()
        return event

    def unwatch(self, generation_id: str, event: threading.Event) -> None:
        with self._changed:
            events = self._watched.get(generation_id, [])
            if event in events:
                events.remove(event)
            if not events:
                self._watched.pop(generation_id, None)

    def _run(self) -> None:
        failing = False
        while True:
            with self._changed:
                while not self._watched:
                    self._changed.wait()
                ids = list(self._watched)
            try:
                raised = cache.get_many([_key(generation_id) for generation_id in ids])
            except Exception as error:  # noqa: BLE001 - the watcher must outlive any failed read
                if not failing:
                    # The generations still end at their own limits, and a Redis outage
                    # breaks their relay too, which stops them.
                    logger.warning(
                        "could not read cancel flags (%s); retrying every %.0fs", error, _RETRY_SECONDS
                    )
                failing = True
                time.sleep(_RETRY_SECONDS)
                continue
            failing = False
            if raised:
                self._raise([generation_id for generation_id in ids if raised.get(_key(generation_id))])
            time.sleep(WATCH_POLL_SECONDS)

    def _raise(self, generation_ids: list[str]) -> None:
        with self._changed:
            for generation_id in generation_ids:
                for event in self._watched.get(generation_id, []):
                    event.set()


_watcher = _CancelWatcher()


@contextmanager
def generation_cancel_watch(*, generation_id: str) -> Iterator[threading.Event]:
    """An event that is set within about `WATCH_POLL_SECONDS` of the generation's cancel flag
    being raised, from any process, while the block runs.

    If the cache cannot be read, the event is not set meanwhile (a warning is logged, and
    the read is retried every second); the generation then ends at its own limits.
    """
    event = _watcher.watch(generation_id)
    try:
        yield event
    finally:
        _watcher.unwatch(generation_id, event)

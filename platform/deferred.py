"""Bookkeeping that must not be lost when its store is briefly away: retried in the background.

A generation that ends while Redis is down cannot settle its quota reservation or give back
its chat slot at that moment. Failing the generation for it would be wrong (the answer was
given) and dropping it would leak (the slot) or under-charge (the tokens). So the step is
tried at once and, if the store is unreachable, handed to one daemon thread per process
that tries again with backoff until it succeeds or `give_up_after` passes. Past that, the
leases the steps guard expire by themselves; giving up is logged as an error.

The retries live in memory: a process that dies with steps pending loses them, and the
leases' expiry is again the backstop.
"""

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)

FIRST_PAUSE_SECONDS = 0.25
LONGEST_PAUSE_SECONDS = 5.0


@dataclass
class _Pending:
    what: str
    attempt: Callable[[], None]
    retry_on: tuple[type[BaseException], ...]
    deadline: float
    next_try: float
    pause: float


_pending: list[_Pending] = []
_wake = threading.Condition()
_worker: threading.Thread | None = None


def deferred_until_done(
    *,
    what: str,
    attempt: Callable[[], None],
    retry_on: tuple[type[BaseException], ...],
    give_up_after: float,
) -> bool:
    """Run `attempt` now; if it raises one of `retry_on`, keep retrying it in the background.

    True when it is done now, False when it was deferred. Other exceptions propagate.
    """
    try:
        attempt()
    except retry_on as error:
        logger.warning("%s: deferred, its store is unreachable (%s)", what, error)
    else:
        return True
    now = time.monotonic()
    with _wake:
        _pending.append(
            _Pending(
                what=what,
                attempt=attempt,
                retry_on=retry_on,
                deadline=now + give_up_after,
                next_try=now + FIRST_PAUSE_SECONDS,
                pause=FIRST_PAUSE_SECONDS,
            )
        )
        _worker_ensure()
        _wake.notify()
    return False


def deferred_pending() -> int:
    """How many steps wait for a retry in this process."""
    with _wake:
        return len(_pending)


def _worker_ensure() -> None:
    global _worker  # noqa: PLW0603 - one retry thread per process, started on first need
    if _worker is None or not _worker.is_alive():
        _worker = threading.Thread(target=_retry_forever, name="gatehouse-deferred", daemon=True)
        _worker.start()


def _retry_forever() -> None:
    while True:
        with _wake:
            while not _pending:
                _wake.wait()
            due = min(step.next_try for step in _pending)
            _wake.wait(timeout=max(0.0, due - time.monotonic()))
            now = time.monotonic()
            ready = [step for step in _pending if step.next_try <= now]
        for step in ready:
            _retry(step, now=now)


def _retry(step: _Pending, *, now: float) -> None:
    try:
        step.attempt()
    except step.retry_on as error:
        if now >= step.deadline:
            logger.error("%s: given up, its store stayed unreachable (%s)", step.what, error)
        else:
            step.pause = min(step.pause * 2, LONGEST_PAUSE_SECONDS)
            step.next_try = now + step.pause
            return
    except Exception:
        logger.exception("%s: failed on retry", step.what)
    else:
        logger.info("%s: done on retry", step.what)
    with _wake:
        _pending.remove(step)

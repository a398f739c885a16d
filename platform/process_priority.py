"""Generation work yields the CPU to the web tier where both share a host.

A model on the CPU (and a GPU worker's own Python) keeps cores busy for as long as it decodes.
Where the web server runs beside it (one host, `make run`, a small compose stack), the
scheduler would give both the same share, and a cheap request waits behind a decode step.
Raising the generation side's nice value lets the web tier's short bursts run first; the
generations take whatever CPU is left, which on an idle web tier is all of it.

Linux keeps a nice value per thread, and a thread starts with its starter's: so a Celery
worker raises every thread it has at start-up (those it starts later inherit it), and the
embedded executor raises each of its threads as it starts.
"""

import logging
import os
import sys
import threading
from pathlib import Path

logger = logging.getLogger(__name__)

# Linux's highest nice value: the lowest priority.
NICENESS_MAX = 19
# Elsewhere a nice value is the process's, and a thread's id is no process id.
PER_THREAD = sys.platform.startswith("linux")


def _thread_ids() -> list[int]:
    """This process's threads (Linux's /proc), or the process itself elsewhere."""
    if PER_THREAD:
        return [int(entry.name) for entry in Path("/proc/self/task").iterdir() if entry.name.isdigit()]
    return [os.getpid()]


def _niceness_raise(thread_id: int, *, niceness: int) -> None:
    current = os.getpriority(os.PRIO_PROCESS, thread_id)
    os.setpriority(os.PRIO_PROCESS, thread_id, min(NICENESS_MAX, current + niceness))


def thread_priority_lower(niceness: int) -> None:
    """Raise the calling thread's nice value by `niceness` (0: leave it); as a thread pool's
    initializer, every thread of the pool. A refusal by the system is logged, never raised:
    a generation runs at its old priority rather than not at all. Linux only: elsewhere it
    would lower the whole process, once per thread."""
    if niceness <= 0 or not PER_THREAD:
        return
    try:
        _niceness_raise(threading.get_native_id(), niceness=niceness)
    except OSError as error:
        logger.warning("could not lower this generation thread's CPU priority: %s", error)


def process_priority_lower(*, niceness: int) -> int:
    """Raise the nice value of every thread of this process by `niceness` (0: leave them), as a
    worker does before it takes work; returns how many threads were raised. A thread that ended
    meanwhile is passed over; any other refusal is logged, and the worker runs as it was."""
    if niceness <= 0:
        return 0
    raised = 0
    for thread_id in _thread_ids():
        try:
            _niceness_raise(thread_id, niceness=niceness)
        except ProcessLookupError:
            continue  # it ended between the listing and now
        except OSError as error:
            logger.warning("could not lower this worker's CPU priority: %s", error)
            return raised
        raised += 1
    return raised

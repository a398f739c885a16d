"""Generation work yields the CPU to the web tier where both share a host.

A model on the CPU (and a GPU worker's own Python) keeps cores busy for as long as it decodes.
Where the web server runs beside it (one host, `make run`, a small compose stack), the
scheduler would give both the same share, and a cheap request waits behind a decode step.
Raising the generation side's nice value lets the web tier's short bursts run first; the
generations take whatever CPU is left, which on an idle web tier is all of it.

Linux keeps a nice value per thread, and a thread starts with its starter's: so a Celery
worker raises every thread it has at start-up (those it starts later inherit it), and the
embedded executor raises each of its threads as it starts.

A nice value only weighs the shares: a web thread that wakes may still wait for the decode
thread to finish its time slice. Asked to (`GATEHOUSE_WORKER_SCHED_IDLE`, Linux), a Celery worker
also moves every thread into the idle scheduling class (SCHED_IDLE): it runs on CPU time no
other thread of its group wants, and a woken web thread takes the core from it at once. It is
off by default: the kernel counts a core running only idle-class threads as free and wakes other
work onto it even beside a truly idle core, so the generation is interrupted far more often. The class
weighs only within one control group: a worker in a container of its own (Kubernetes, compose)
competes with other containers as before. The embedded executor's threads keep the normal
class: they share the web process's interpreter lock, and an idle-class thread that holds it
while the cores are busy would stall the event loop waiting for it.

Where web and worker share a few cores, the worker can also be kept to some of them
(`GATEHOUSE_WORKER_CPUS`, Linux): its decode thread then keeps a core of its own, warm, instead
of being moved and interrupted wherever the web tier, the database and the clients wake, and
the web tier keeps the other cores.
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
# The idle scheduling class (Linux; Python's os module has it where the system does).
IDLE_CLASS = PER_THREAD and hasattr(os, "SCHED_IDLE")


def _thread_ids() -> list[int]:
    """This process's threads (Linux's /proc), or the process itself elsewhere."""
    if PER_THREAD:
        return [int(entry.name) for entry in Path("/proc/self/task").iterdir() if entry.name.isdigit()]
    return [os.getpid()]


def _niceness_raise(thread_id: int, *, niceness: int) -> None:
    current = os.getpriority(os.PRIO_PROCESS, thread_id)
    os.setpriority(os.PRIO_PROCESS, thread_id, min(NICENESS_MAX, current + niceness))


def _idle_class_enter(thread_id: int) -> None:
    # Lowering is always allowed; leaving the idle class again would need privilege.
    os.sched_setscheduler(thread_id, os.SCHED_IDLE, os.sched_param(0))


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


def process_priority_lower(*, niceness: int, idle_class: bool = False) -> int:
    """Raise the nice value of every thread of this process by `niceness` (0: leave them) and,
    with `idle_class` on Linux, move each into the idle scheduling class, as a worker does before
    it takes work; returns how many threads were lowered. A thread that ended meanwhile is
    passed over; any other refusal is logged, and the worker runs as it was."""
    idle_class = idle_class and IDLE_CLASS
    if niceness <= 0 and not idle_class:
        return 0
    lowered = 0
    for thread_id in _thread_ids():
        try:
            if niceness > 0:
                _niceness_raise(thread_id, niceness=niceness)
            if idle_class:
                _idle_class_enter(thread_id)
        except ProcessLookupError:
            continue  # it ended between the listing and now
        except OSError as error:
            logger.warning("could not lower this worker's CPU priority: %s", error)
            return lowered
        lowered += 1
    return lowered


def cpu_list_parse(text: str) -> frozenset[int]:
    """The CPUs a list names, as Linux writes them ("1", "2-5", "0,2-3"); none for "".

    Raises ValueError on anything else (a malformed item, a range that runs backwards).
    """
    cpus: set[int] = set()
    for item in filter(None, (part.strip() for part in text.split(","))):
        first, dash, last = item.partition("-")
        if not first.isdigit() or (dash and not last.isdigit()):
            raise ValueError(f"{item!r} is neither a CPU number nor a range of them (like 2-5)")
        low, high = int(first), int(last or first)
        if high < low:
            raise ValueError(f"the range {item!r} runs backwards")
        cpus.update(range(low, high + 1))
    return frozenset(cpus)


def process_cpus_confine(*, cpus: frozenset[int]) -> int:
    """Keep every thread of this process, and those it starts later, to `cpus` (none: leave them
    where they may run); returns how many threads were moved. Linux only. A thread that ended
    meanwhile is passed over; any other refusal (CPUs this process may not use) is logged, and
    the worker runs where it did."""
    if not cpus or not hasattr(os, "sched_setaffinity"):
        return 0
    moved = 0
    for thread_id in _thread_ids():
        try:
            os.sched_setaffinity(thread_id, cpus)
        except ProcessLookupError:
            continue  # it ended between the listing and now
        except OSError as error:
            logger.warning("could not keep this worker to CPUs %s: %s", sorted(cpus), error)
            return moved
        moved += 1
    return moved

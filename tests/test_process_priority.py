"""Generation work runs below the web tier's CPU priority (GATEHOUSE_WORKER_NICENESS), on the CPUs it
is given (GATEHOUSE_WORKER_CPUS).

Each case runs in a process of its own: a nice value once raised cannot be lowered again
without privilege, and the suite's own process must keep its priority.
"""

import os
import subprocess
import sys
import textwrap

import pytest
from django.conf import settings

from gatehouse.process_priority import IDLE_CLASS, PER_THREAD, cpu_list_parse

pytestmark = pytest.mark.skipif(not PER_THREAD, reason="nice values per thread are Linux's")


_PRELUDE = """
import os, queue, threading

def nice_of(thread_id=None):
    return os.getpriority(os.PRIO_PROCESS, thread_id or threading.get_native_id())

# A thread started now that waits until `stop` is set: its native id, and `stop`.
def thread_waiting():
    started, stop = queue.Queue(), threading.Event()
    threading.Thread(target=lambda: (started.put(threading.get_native_id()), stop.wait())).start()
    return started.get(), stop

# What `read()` says in a thread started now.
def in_new_thread(read):
    said = []
    thread = threading.Thread(target=lambda: said.append(read()))
    thread.start(); thread.join()
    return said[0]
"""


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`code` in a fresh interpreter, with `nice_of(thread id)` (the calling thread's by default),
    `thread_waiting()` and `in_new_thread(read)`."""
    return subprocess.run(
        [sys.executable, "-c", _PRELUDE + textwrap.dedent(code)],
        cwd=settings.BASE_DIR,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "gatehouse.settings", **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_a_worker_lowers_every_thread_it_has_and_those_it_starts_later() -> None:
    result = _python(
        """
        from gatehouse.process_priority import process_priority_lower

        before = nice_of()
        earlier_id, stop = thread_waiting()
        raised = process_priority_lower(niceness=3)
        later = in_new_thread(nice_of)
        print(before, raised, nice_of(), nice_of(earlier_id), later)
        stop.set()
        """
    )
    assert result.returncode == 0, result.stderr
    before, raised, main, earlier, later = map(int, result.stdout.split())
    assert raised >= 2  # the main thread and the one started before
    assert (main, earlier, later) == (before + 3, before + 3, before + 3)


def test_the_embedded_executor_lowers_its_threads_and_not_the_callers() -> None:
    result = _python(
        """
        import django; django.setup()
        from inference.dispatch import InprocessExecutor

        executor = InprocessExecutor(max_workers=2, niceness=4)
        print(nice_of(), executor._pool.submit(nice_of).result())
        """
    )
    assert result.returncode == 0, result.stderr
    caller, pooled = map(int, result.stdout.split())
    assert pooled == min(19, caller + 4)


def test_a_nice_value_is_capped_at_the_lowest_priority_and_zero_changes_nothing() -> None:
    result = _python(
        """
        from gatehouse.process_priority import process_priority_lower, thread_priority_lower

        before = nice_of()
        untouched = process_priority_lower(niceness=0)
        thread_priority_lower(0)
        same = nice_of()
        process_priority_lower(niceness=50)
        print(before, untouched, same, nice_of())
        """
    )
    assert result.returncode == 0, result.stderr
    before, untouched, same, capped = map(int, result.stdout.split())
    assert (untouched, same, capped) == (0, before, 19)


@pytest.mark.skipif(not IDLE_CLASS, reason="the idle scheduling class is Linux's")
def test_a_worker_moves_every_thread_into_the_idle_class_and_those_it_starts_later() -> None:
    result = _python(
        """
        from gatehouse.process_priority import process_priority_lower

        def policy_of(thread_id=None):
            return os.sched_getscheduler(thread_id or threading.get_native_id())

        before = policy_of()
        earlier_id, stop = thread_waiting()
        lowered = process_priority_lower(niceness=0, idle_class=True)
        later = in_new_thread(policy_of)
        print(before, lowered, policy_of(), policy_of(earlier_id), later, nice_of())
        stop.set()
        """
    )
    assert result.returncode == 0, result.stderr
    before, lowered, main, earlier, later, nice = map(int, result.stdout.split())
    assert before == os.SCHED_OTHER
    assert lowered >= 2  # the main thread and the one started before
    assert (main, earlier, later) == (os.SCHED_IDLE,) * 3
    assert nice == os.getpriority(os.PRIO_PROCESS, 0)  # niceness 0 left the nice value alone


def test_without_the_idle_class_a_worker_keeps_the_normal_class() -> None:
    result = _python(
        """
        from gatehouse.process_priority import process_priority_lower

        process_priority_lower(niceness=2)
        print(os.sched_getscheduler(0))
        """
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) == os.SCHED_OTHER


@pytest.mark.parametrize("value", ["-1", "20", "ten"])
def test_a_niceness_out_of_range_is_refused_at_startup(value: str) -> None:
    result = _python("import django; django.setup()", GATEHOUSE_WORKER_NICENESS=value)
    assert result.returncode != 0
    assert "GATEHOUSE_WORKER_NICENESS" in result.stderr


# The CPUs a worker is kept to (GATEHOUSE_WORKER_CPUS).

LAST_CPU = max(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("text", "cpus"),
    [("", set()), ("1", {1}), ("2-5", {2, 3, 4, 5}), ("0,2-3", {0, 2, 3}), (" 1 , 3 ", {1, 3})],
)
def test_a_cpu_list_is_read_as_linux_writes_it(text: str, cpus: set[int]) -> None:
    assert cpu_list_parse(text) == cpus


@pytest.mark.parametrize("text", ["3-1", "one", "1-", "-1", "1-2-3"])
def test_a_malformed_cpu_list_is_refused_with_what_is_wrong(text: str) -> None:
    with pytest.raises(ValueError, match=r"runs backwards|neither a CPU number nor a range"):
        cpu_list_parse(text)


@pytest.mark.parametrize("value", ["3-1", "first"])
def test_a_malformed_cpu_list_is_refused_at_startup(value: str) -> None:
    result = _python("import django; django.setup()", GATEHOUSE_WORKER_CPUS=value)
    assert result.returncode != 0
    assert "GATEHOUSE_WORKER_CPUS" in result.stderr


@pytest.mark.skipif(LAST_CPU == 0, reason="one CPU: there is nowhere else to keep a worker")
def test_a_worker_keeps_every_thread_to_its_cpus_and_those_it_starts_later() -> None:
    result = _python(
        f"""
        from gatehouse.process_priority import process_cpus_confine

        def cpus_of(thread_id=0):
            return ",".join(map(str, sorted(os.sched_getaffinity(thread_id))))

        earlier_id, stop = thread_waiting()
        before = cpus_of()
        moved = process_cpus_confine(cpus=frozenset({{{LAST_CPU}}}))
        later = in_new_thread(cpus_of)
        print(before, moved, cpus_of(), cpus_of(earlier_id), later)
        stop.set()
        """
    )
    assert result.returncode == 0, result.stderr
    before, moved, main, earlier, later = result.stdout.split()
    assert before != str(LAST_CPU)  # it could run elsewhere before
    assert int(moved) >= 2  # the main thread and the one started before
    assert (main, earlier, later) == (str(LAST_CPU),) * 3


def test_cpus_the_process_may_not_use_are_logged_and_it_runs_where_it_did() -> None:
    result = _python(
        """
        import logging
        logging.basicConfig(level=logging.WARNING)
        from gatehouse.process_priority import process_cpus_confine

        before = sorted(os.sched_getaffinity(0))
        moved = process_cpus_confine(cpus=frozenset({4095}))
        print(moved, sorted(os.sched_getaffinity(0)) == before)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "True"]
    assert "could not keep this worker to CPUs [4095]" in result.stderr


def test_no_cpus_named_leaves_the_worker_where_it_may_run() -> None:
    result = _python(
        """
        from gatehouse.process_priority import process_cpus_confine

        before = sorted(os.sched_getaffinity(0))
        print(process_cpus_confine(cpus=frozenset()), sorted(os.sched_getaffinity(0)) == before)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "True"]

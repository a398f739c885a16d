"""The worker probes (gatehouse.worker_probe): a heartbeat the worker's own loop writes, a
ready mark only after its warm-up, and a probe that fails when either is missing or stale.

The receivers are the real ones, called as Celery calls them; the last test runs a real worker
(production profile) and probes it from outside, as the kubelet does.
"""

import functools
import os
import subprocess
import sys
import time
from collections.abc import Callable, Hashable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from gatehouse import worker_probe
from gatehouse.worker_probe import (
    HEARTBEAT,
    HEARTBEAT_SECONDS,
    READY,
    STALE_AFTER_SECONDS,
    probe_live,
    probe_ready,
)
from inference import tasks
from tests.celery_worker import CeleryWorker, database_url
from tests.profile import PRODUCTION

LAST_CPU = max(os.sched_getaffinity(0))

ROOT = Path(__file__).resolve().parents[1]


class _Timer:
    """What a consumer's timer offers the receiver: entries we fire by hand, as its loop would."""

    def __init__(self) -> None:
        self.entries: list[tuple[float, Callable[[], None]]] = []

    def call_repeatedly(self, seconds: float, fun: Callable[[], None]) -> None:
        self.entries.append((seconds, fun))

    def call_after(self, seconds: float, fun: Callable[[], None]) -> None:
        self.entries.append((seconds, fun))

    def tick(self) -> None:
        for _, fun in self.entries:
            fun()


class _Consumer:
    def __init__(self) -> None:
        self.timer = _Timer()


@pytest.fixture
def probe_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "probe"
    monkeypatch.setenv("GATEHOUSE_WORKER_PROBE_DIR", str(directory))
    return directory


def _started_worker() -> _Consumer:
    """worker_init, then worker_ready up to the heartbeat, then one turn of the loop."""
    worker_probe._on_worker_init()
    consumer = _Consumer()
    worker_probe._on_worker_ready(sender=consumer)
    consumer.timer.tick()
    return consumer


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_a_running_worker_beats_on_its_loops_timer(probe_dir: Path) -> None:
    worker_probe._on_worker_init()
    consumer = _Consumer()
    worker_probe._on_worker_ready(sender=consumer)
    assert not probe_live(probe_dir).ok, "a heartbeat before the loop turns proves nothing"
    assert HEARTBEAT_SECONDS in [seconds for seconds, _ in consumer.timer.entries]
    consumer.timer.tick()
    assert probe_live(probe_dir).ok
    assert (probe_dir / HEARTBEAT).read_text() == str(os.getpid())


def test_a_stale_heartbeat_fails_both_probes(probe_dir: Path) -> None:
    consumer = _started_worker()
    worker_probe.ready_mark()
    assert probe_ready(probe_dir).ok
    _age(probe_dir / HEARTBEAT, STALE_AFTER_SECONDS + 5)
    live, ready = probe_live(probe_dir), probe_ready(probe_dir)
    assert not live.ok
    assert "stuck" in live.reason
    assert not ready.ok
    consumer.timer.tick()  # the loop turns again
    assert probe_live(probe_dir).ok


def test_ready_only_after_the_configured_models_warmed(
    probe_dir: Path, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.GATEHOUSE_WARM_MODELS = ["demo-tiny"]
    _started_worker()
    seen_while_warming: list[bool] = []

    def warm_up(*, model_names: list[str]) -> list[str]:
        seen_while_warming.append(probe_ready(probe_dir).ok)
        return model_names

    monkeypatch.setattr(tasks, "engines_warm_up", warm_up)
    assert probe_ready(probe_dir).reason.startswith("warming up")
    tasks._warm_up_at_start()
    assert seen_while_warming == [False]
    assert probe_ready(probe_dir).ok


def test_a_failed_warm_up_leaves_the_worker_unready(
    probe_dir: Path, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.GATEHOUSE_WARM_MODELS = ["demo-tiny"]
    _started_worker()

    def warm_up(*, model_names: list[str]) -> list[str]:
        raise RuntimeError("out of GPU memory")

    monkeypatch.setattr(tasks, "engines_warm_up", warm_up)
    with pytest.raises(RuntimeError):
        tasks._warm_up_at_start()  # Celery logs it and the worker runs on, unready
    assert probe_live(probe_dir).ok
    assert not probe_ready(probe_dir).ok


def test_a_worker_without_models_to_warm_is_ready_at_once(probe_dir: Path, settings: Any) -> None:
    settings.GATEHOUSE_WARM_MODELS = []
    _started_worker()
    tasks._warm_up_at_start()
    assert probe_ready(probe_dir).ok


def test_a_previous_workers_files_do_not_count(probe_dir: Path) -> None:
    """An emptyDir outlives a container restart: the new worker starts unready and unlive."""
    probe_dir.mkdir()
    (probe_dir / HEARTBEAT).write_text("1")
    (probe_dir / READY).write_text("1")
    worker_probe._on_worker_init()
    assert not probe_live(probe_dir).ok
    (probe_dir / READY).write_text("1")  # left by another process, say
    worker_probe._on_worker_ready(sender=(consumer := _Consumer()))
    consumer.timer.tick()
    assert "ready mark" in probe_ready(probe_dir).reason


def test_draining_is_unready_but_live(probe_dir: Path) -> None:
    _started_worker()
    worker_probe.ready_mark()
    worker_probe._on_worker_shutting_down()
    assert probe_live(probe_dir).ok
    assert not probe_ready(probe_dir).ok


def test_the_receivers_are_connected_to_celerys_signals() -> None:
    from celery.signals import worker_init, worker_ready, worker_shutting_down

    import gatehouse.celery  # noqa: F401 - connects them

    for signal, receiver in [
        (worker_init, worker_probe._on_worker_init),
        (worker_ready, worker_probe._on_worker_ready),
        (worker_shutting_down, worker_probe._on_worker_shutting_down),
    ]:
        assert receiver in signal._live_receivers(sender=None), f"{receiver.__name__} is not connected"


def _probe(*arguments: str, directory: Path) -> subprocess.CompletedProcess[str]:
    """The probe as the kubelet runs it: a fresh interpreter, no Django settings module."""
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    env["GATEHOUSE_WORKER_PROBE_DIR"] = str(directory)
    return subprocess.run(
        [sys.executable, "-m", "gatehouse.worker_probe", *arguments],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_the_probe_command_exits_0_or_1_and_never_loads_django(probe_dir: Path) -> None:
    assert _probe("--live", directory=probe_dir).returncode == 1
    _started_worker()
    assert _probe("--live", directory=probe_dir).returncode == 0
    not_ready = _probe("--ready", directory=probe_dir)
    assert not_ready.returncode == 1
    assert "warming up" in not_ready.stdout
    worker_probe.ready_mark()
    assert _probe("--ready", directory=probe_dir).returncode == 0
    check = subprocess.run(
        [sys.executable, "-c", "import sys, gatehouse.worker_probe; sys.exit('django' in sys.modules)"],
        cwd=ROOT,
        check=False,
        timeout=60,
    )
    assert check.returncode == 0, "the probe imports Django: every probe would pay for its start-up"


# --- a real worker ------------------------------------------------------------------------------


@pytest.fixture
def warming_worker(tmp_path: Path, model_root: Path) -> Iterator[tuple[CeleryWorker, Path]]:
    directory = tmp_path / "probe"
    worker = CeleryWorker(
        env={
            **os.environ,
            "DATABASE_URL": database_url(settings.DATABASES["default"]),
            "REDIS_URL": settings.REDIS_URL,
            "GATEHOUSE_MODEL_ROOT": str(model_root),
            "GATEHOUSE_WARM_MODELS": "demo-tiny",
            "GATEHOUSE_WORKER_PROBE_DIR": str(directory),
            "GATEHOUSE_WORKER_SCHED_IDLE": "true",
            "GATEHOUSE_WORKER_CPUS": str(LAST_CPU),
        },
        log_path=tmp_path / "probed-worker.log",
        queues="inference.probed-model",
        name="probed",
    )
    worker.start()
    yield worker, directory
    worker.stop()


def _per_thread(pid: int, read: Callable[[int], Hashable]) -> set[Hashable]:
    """What `read` says of each thread of a process (Linux keeps a nice value, a scheduling
    class and the CPUs it may run on per thread)."""
    values: set[Hashable] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            values.add(read(int(task.name)))
        except ProcessLookupError:
            continue  # a thread that ended meanwhile
    return values


def _until(condition: Callable[[], bool], *, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


@pytest.mark.skipif(not PRODUCTION, reason="starts a real Celery worker (production profile)")
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_is_probed_live_and_ready_after_warm_up_and_unready_once_stopped(
    demo_version: Any, warming_worker: tuple[CeleryWorker, Path]
) -> None:
    worker, directory = warming_worker
    _until(lambda: _probe("--ready", directory=directory).returncode == 0, seconds=60, what=worker.log_tail())
    assert "warmed demo-tiny" in worker.log_path.read_text()
    assert _probe("--live", directory=directory).returncode == 0
    # It runs below the web tier (GATEHOUSE_WORKER_NICENESS, 10 by default), every thread.
    assert worker.process is not None
    nice_of = functools.partial(os.getpriority, os.PRIO_PROCESS)
    assert _per_thread(worker.process.pid, nice_of) == {min(19, nice_of(0) + 10)}
    # ... and, asked to (GATEHOUSE_WORKER_SCHED_IDLE), in the idle scheduling class.
    assert _per_thread(worker.process.pid, os.sched_getscheduler) == {os.SCHED_IDLE}
    # ... and on the CPUs it was given (GATEHOUSE_WORKER_CPUS).
    assert _per_thread(worker.process.pid, lambda thread: frozenset(os.sched_getaffinity(thread))) == {
        frozenset({LAST_CPU})
    }
    # The heartbeat is rewritten while the worker runs, not written once.
    _age(directory / HEARTBEAT, STALE_AFTER_SECONDS + 5)
    assert _probe("--live", directory=directory).returncode == 1
    _until(
        lambda: _probe("--live", directory=directory).returncode == 0,
        seconds=HEARTBEAT_SECONDS * 3,
        what="the worker did not beat again",
    )
    worker.stop()
    assert _probe("--ready", directory=directory).returncode == 1

"""Liveness and readiness of a Celery worker, for exec probes that must stay cheap.

A worker writes two small files into its probe directory (`GATEHOUSE_WORKER_PROBE_DIR`, one
per worker: the pod's own /tmp in Kubernetes and compose):

- `heartbeat`, rewritten every HEARTBEAT_SECONDS by an entry on the worker's own timer. With
  the Redis broker that timer is serviced by the consumer's event loop, so a fresh heartbeat
  says the loop still turns, not only that the process exists. It holds the worker's pid.
- `ready`, written once the worker has warmed the models it serves (inference.tasks, after
  GATEHOUSE_WARM_MODELS loaded) and removed when it starts shutting down. It holds the pid too.

`python -m gatehouse.worker_probe --live` exits 0 while the heartbeat is fresh; `--ready` while
it is fresh and the ready file was written by the same worker. Neither imports Django (a probe
runs every few seconds: about 50 ms here against 1.5 s for `manage.py`), and neither touches
the broker: a broker outage is Celery's to ride out by reconnecting, and restarting a worker
(a GPU worker reloading its model) would not end it.

Failure modes: a worker wedged before its loop runs (a warm-up that never returns) writes no
heartbeat, so only the startup probe's budget bounds it; while the consumer reconnects to a
lost broker the loop does not turn and the heartbeat ages (the liveness budget must cover the
reconnects you will wait for); two workers given one directory overwrite each other's files.
"""

import argparse
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

PROBE_DIR_VARIABLE = "GATEHOUSE_WORKER_PROBE_DIR"
HEARTBEAT = "heartbeat"
READY = "ready"
# How often a running worker rewrites its heartbeat, and how old one may be before the worker
# counts as stuck (six missed beats: a long garbage collection or a slow disk is not a hang).
HEARTBEAT_SECONDS = 10.0
STALE_AFTER_SECONDS = 60.0


def probe_dir() -> Path:
    """The worker's probe directory: GATEHOUSE_WORKER_PROBE_DIR, else var/worker-probe.

    Read from the environment, not Django's settings, so that the probe needs no Django.
    """
    configured = os.environ.get(PROBE_DIR_VARIABLE)
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parent.parent / "var" / "worker-probe"


def _write(path: Path, text: str) -> None:
    """Write whole or not at all: a probe never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(text)
    partial.replace(path)


def heartbeat_write(directory: Path | None = None) -> None:
    """Record that this worker's loop turned just now. An OSError (a full or missing disk) is
    logged, not raised: the heartbeat ages and the probe reports it."""
    try:
        _write((directory or probe_dir()) / HEARTBEAT, str(os.getpid()))
    except OSError:
        logger.exception("could not write the worker heartbeat")


def ready_mark(directory: Path | None = None) -> None:
    """Record that this worker has warmed up and may be counted as serving."""
    _write((directory or probe_dir()) / READY, str(os.getpid()))


def ready_clear(directory: Path | None = None) -> None:
    (directory or probe_dir()).joinpath(READY).unlink(missing_ok=True)


def probe_reset(directory: Path | None = None) -> None:
    """Forget a previous worker's files (an emptyDir outlives a container's restart)."""
    folder = directory or probe_dir()
    for name in (HEARTBEAT, READY):
        folder.joinpath(name).unlink(missing_ok=True)


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    reason: str


def _pid_in(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def probe_live(
    directory: Path, *, max_age: float = STALE_AFTER_SECONDS, now: float | None = None
) -> ProbeResult:
    """Live: a heartbeat younger than `max_age` seconds."""
    try:
        age = (time.time() if now is None else now) - (directory / HEARTBEAT).stat().st_mtime
    except FileNotFoundError:
        return ProbeResult(False, f"no heartbeat in {directory}: the worker has not started its loop")
    if age > max_age:
        return ProbeResult(False, f"heartbeat {age:.0f}s old (limit {max_age:.0f}s): the worker is stuck")
    return ProbeResult(True, f"heartbeat {age:.0f}s old")


def probe_ready(
    directory: Path, *, max_age: float = STALE_AFTER_SECONDS, now: float | None = None
) -> ProbeResult:
    """Ready: live, and warm-up done by the worker whose heartbeat that is."""
    live = probe_live(directory, max_age=max_age, now=now)
    if not live.ok:
        return live
    warmed_by = _pid_in(directory / READY)
    if warmed_by is None:
        return ProbeResult(False, "warming up: its models are not loaded yet")
    beating = _pid_in(directory / HEARTBEAT)
    if warmed_by != beating:
        return ProbeResult(False, f"the ready mark is worker {warmed_by}'s, the heartbeat worker {beating}'s")
    return ProbeResult(True, f"warmed up; {live.reason}")


# --- the worker's side: Celery signal receivers (gatehouse.celery connects them) ---------------


def _on_worker_init(**_: object) -> None:
    probe_reset()


def _on_worker_ready(sender: Any = None, **_: object) -> None:
    """Beat on the consumer's timer (its event loop's, with the Redis broker). The first beat
    comes once the loop runs, after every worker_ready receiver, warm-up included, returned."""
    timer = getattr(sender, "timer", None)
    if timer is None:
        logger.warning("worker_ready came without a consumer timer: no heartbeat for the probe")
        return
    timer.call_repeatedly(HEARTBEAT_SECONDS, heartbeat_write)
    timer.call_after(0.0, heartbeat_write)


def _on_worker_shutting_down(**_: object) -> None:
    """Draining: no longer ready (the heartbeat stays, so liveness does not cut the drain)."""
    ready_clear()


def worker_probe_connect() -> None:
    from celery.signals import worker_init, worker_ready, worker_shutting_down

    worker_init.connect(_on_worker_init, weak=False, dispatch_uid="gatehouse-probe-init")
    worker_ready.connect(_on_worker_ready, weak=False, dispatch_uid="gatehouse-probe-heartbeat")
    worker_shutting_down.connect(_on_worker_shutting_down, weak=False, dispatch_uid="gatehouse-probe-drain")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gatehouse.worker_probe", description=__doc__.splitlines()[0]
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--live", action="store_true", help="exit 0 while the heartbeat is fresh")
    which.add_argument("--ready", action="store_true", help="exit 0 once warmed up, while live")
    parser.add_argument(
        "--max-age", type=float, default=STALE_AFTER_SECONDS, help="seconds a heartbeat stays fresh"
    )
    parser.add_argument(
        "--dir", type=Path, default=None, help=f"the probe directory (default: ${PROBE_DIR_VARIABLE})"
    )
    options = parser.parse_args(argv)
    directory = options.dir or probe_dir()
    check = probe_live if options.live else probe_ready
    result = check(directory, max_age=options.max_age)
    # The kubelet keeps what a probe prints with the pod's events.
    sys.stdout.write(("ok: " if result.ok else "failing: ") + result.reason + "\n")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())

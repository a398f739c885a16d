"""The bench's own servers (mock upstream, floor) and the CPU time of any served process.

CPU time is read from /proc/<pid>/stat (Linux): user + system time of the process and of
every live descendant, plus what reaped children left in their parents' cutime/cstime, so
a server's figure covers whatever it forks. Read before and after a fixed number of
requests, the difference divided by the requests is the CPU a request cost that server.
"""

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from inference.protocol import SERVER_MAX_FRAME_BYTES
from tests.e2e.server import REPO_ROOT, ServedGatehouse, free_port

_PROC = Path("/proc")
_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

# tests.e2e.server.serve starts Gatehouse with these flags after --host and --port; the
# floor is served with the same ones, so both sides get the same server, loop and parser.
GATEWAY_SERVER_FLAGS = (
    "--lifespan", "on", "--timeout-graceful-shutdown", "25", "--ws-max-size", str(SERVER_MAX_FRAME_BYTES),
    "--ws-per-message-deflate", "false",
)  # fmt: skip
# The mock upstream is the baseline, not a measured side: as quiet as it can be.
QUIET_SERVER_FLAGS = ("--log-level", "warning", "--no-access-log")


@dataclass
class Served:
    """A bench server: where it listens and the process that serves it."""

    base_url: str
    pid: int


@contextmanager
def uvicorn_served(
    app: str, *, env: Mapping[str, str], flags: Sequence[str], log: Path | None = None, ready_path: str = "/"
) -> Iterator[Served]:
    """`app` served by uvicorn in its own process on a free loopback port, until the block ends.

    Ready when GET `ready_path` gets any HTTP answer (a 404 included).
    """
    port = free_port()
    output = log.open("wb") if log is not None else subprocess.DEVNULL
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module, fixed arguments
        [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port), *flags],
        cwd=REPO_ROOT, env={"PATH": "", **env}, stdout=output, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_answering(base_url + ready_path, process)
        yield Served(base_url=base_url, pid=process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _wait_until_answering(url: str, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return  # an answer, if not a 200: the server is up
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError(f"{url}: the server did not start") from None
            time.sleep(0.1)


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat from field 3 (state) on; None once the process is gone."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces and parentheses.
    return text[text.rindex(")") + 2 :].split()


def _descendants(roots: Sequence[int]) -> set[int]:
    """The roots and every live process below them."""
    children: dict[int, list[int]] = {}
    for entry in _PROC.iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, pending = set(), list(roots)
    while pending:
        pid = pending.pop()
        if pid not in found:
            found.add(pid)
            pending.extend(children.get(pid, []))
    return found


def cpu_seconds(roots: Sequence[int]) -> float:
    """User + system CPU seconds of `roots` and all their descendants, reaped ones included."""
    ticks = 0
    for pid in _descendants(roots):
        fields = _stat_fields(pid)
        if fields is not None:
            # utime, stime, cutime, cstime: fields 14 to 17 of stat(5), 11 to 14 here.
            ticks += sum(int(value) for value in fields[11:15])
    return ticks / _TICKS_PER_SECOND


def _command_line(pid: int) -> str:
    try:
        return (_PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def served_roles(served: ServedGatehouse) -> dict[str, list[int]]:
    """The served stack's process ids by role: "web" (uvicorn, serving HTTP) and "worker" (Celery).

    Read from each process's command line, so a stack serving several web processes or
    workers is summed whole; what is neither is counted as web (`serve` starts the web
    server last, after any worker).
    """
    roles: dict[str, list[int]] = {"web": [], "worker": []}
    for process in served.processes:
        if process.poll() is not None:
            continue
        command = _command_line(process.pid)
        roles["worker" if " celery " in f" {command} " else "web"].append(process.pid)
    return roles


def connection_ports(roots: Sequence[int], *, remote_port: int) -> set[int]:
    """The local ports of the TCP connections `roots` (and their descendants) hold to `remote_port`."""
    inodes = set()
    for pid in _descendants(roots):
        try:
            descriptors = list((_PROC / str(pid) / "fd").iterdir())
        except OSError:
            continue
        for descriptor in descriptors:
            try:
                target = str(descriptor.readlink())
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (_PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            # sl, local address:port, remote address:port, ..., inode (the tenth field).
            fields = line.split()
            if fields[9] in inodes and int(fields[2].rpartition(":")[2], 16) == remote_port:
                ports.add(int(fields[1].rpartition(":")[2], 16))
    return ports

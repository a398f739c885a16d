"""`python -m bench --profile`: sample the served processes with py-spy while a goal is measured.

py-spy reads a process's stacks from outside (no code in the server changes), so the profile
shows the deployed configuration as measured. Each goal gets the raw folded stacks of every
served process (the web server, and the worker in production; the floor beside them where it
runs) and a summary of where the
samples fell: the frames that hold the most samples inclusively, and the leaves that burn
them. The summary is what the note quotes; the folded files open in speedscope.
"""

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from tests.e2e.server import ServedGatehouse

# Samples per second: enough for a few-second measure, light enough not to move its figures much.
RATE = 200
TOP = 20
_LINE = re.compile(r":\d+\)$")
# Frames of Gatehouse's own code (py-spy names a frame's file relative to its sys.path entry).
PROJECT_PREFIXES = ("(accounts/", "(audit/", "(inference/", "(gatehouse/", "(platform/", "(bench/")


def _py_spy() -> str:
    # Installed beside this interpreter by the dev extras; the virtual environment may not be on PATH.
    beside = Path(sys.executable).parent / "py-spy"
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if found is None:
        raise RuntimeError("py-spy is not installed: `make install` installs the dev extras")
    return found


@contextmanager
def profile_processes(
    served: ServedGatehouse, *, name: str, directory: Path | None, others: Mapping[str, int] | None = None
) -> Iterator[None]:
    """Record every served process, and `others` (role to pid), while the body runs; a no-op
    when `directory` is None."""
    if directory is None:
        yield
        return
    directory.mkdir(parents=True, exist_ok=True)
    recorders: list[tuple[subprocess.Popen[bytes], Path]] = []
    targets = {_role(served, index): process.pid for index, process in enumerate(served.processes)}
    for role, pid in {**targets, **(others or {})}.items():
        output = directory / f"{name}-{role}.folded"
        recorders.append(
            (
                subprocess.Popen(  # noqa: S603 - py-spy with fixed arguments on our own child
                    [_py_spy(), "record", "--pid", str(pid), "--rate", str(RATE), "--format", "raw",
                     "--output", str(output), "--nonblocking"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                ),
                output,
            )
        )  # fmt: skip
    try:
        yield
    finally:
        for recorder, output in recorders:
            # py-spy writes its file when interrupted, as at the end of a fixed duration.
            recorder.send_signal(signal.SIGINT)
            recorder.wait(timeout=60)
            if output.exists():
                output.with_suffix(".summary.txt").write_text(profile_summary(output.read_text()))


def _role(served: ServedGatehouse, index: int) -> str:
    # serve() starts the worker first (production only) and the web server last.
    return "server" if index == len(served.processes) - 1 else f"worker{index}"


def profile_summary(folded: str, *, top: int = TOP) -> str:
    """The frames holding the most samples (inclusive, once per stack) and the hottest leaves."""
    inclusive: Counter[str] = Counter()
    project: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for line in folded.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        # One entry per function: a frame names the line it is on, which splits a function.
        frames = [_LINE.sub(")", frame) for frame in stack.split(";")]
        total += count
        leaves[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
            if any(prefix in frame for prefix in PROJECT_PREFIXES):
                project[frame] += count
    if total == 0:
        return "no samples\n"

    def table(title: str, counter: Counter[str]) -> list[str]:
        return [title, *(f"{100 * n / total:5.1f}%  {frame}" for frame, n in counter.most_common(top)), ""]

    return "\n".join(
        [
            f"{total} samples",
            "",
            *table("Gatehouse's own frames, inclusive (the frame is on the stack):", project),
            *table("every frame, inclusive:", inclusive),
            *table("self (the frame is running):", leaves),
        ]
    )

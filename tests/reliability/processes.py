"""What a served process costs, read from /proc: resident memory and CPU time."""

import os
from pathlib import Path


def process_rss_kib(pid: int) -> int:
    """Resident memory of `pid`, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"process {pid} reports no VmRSS")


def process_cpu_seconds(pid: int) -> float:
    """CPU time `pid` has used so far, user and system."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime and stime, the 14th and 15th fields of the line (counting from 1).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_peak_rss_reset(pid: int) -> None:
    """Start `pid`'s peak resident memory (VmHWM) again from what it holds now."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def process_peak_rss_kib(pid: int) -> int:
    """The most resident memory `pid` has held since it started or since the last reset, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError(f"process {pid} reports no VmHWM")

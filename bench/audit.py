"""P6: the audit trail's cost per audited request, and its verification speed.

Measured in a Django process of its own on the served stack's database (PostgreSQL in the
production-like run), so the figures include the real lock, insert and commit.
"""

import json
import subprocess
import sys

from bench.report import Goal
from tests.e2e.server import REPO_ROOT, ServedGatehouse

P6_APPEND_GOAL_MS = 1.0
P6_VERIFY_GOAL = 100_000


def measure_p6(served: ServedGatehouse, *, appends: int, events: int) -> list[Goal]:
    result = subprocess.run(  # noqa: S603 - our own interpreter and module, fixed arguments
        [sys.executable, "-m", "bench.audit_probe", "--appends", str(appends), "--events", str(events)],
        cwd=REPO_ROOT,
        env=served.env,
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
    )
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    append_p50 = figures["append"]["in_transaction"]["p50_ms"]
    verify_rate = figures["verify"]["links_and_checkpoints_events_per_s"]
    return [
        Goal(
            id="P6a",
            measure="audit: cost of one audited append inside the request's transaction (p50, ms)",
            goal=f"<= {P6_APPEND_GOAL_MS:g} ms",
            anchor="-",
            measured=append_p50,
            met=append_p50 <= P6_APPEND_GOAL_MS,
            details={key: figures[key] for key in ("database", "append", "concurrent")},
        ),
        Goal(
            id="P6b",
            measure="audit: chain verification speed (links and checkpoints, events/s)",
            goal=f">= {P6_VERIFY_GOAL:,} events/s",
            anchor="-",
            measured=float(verify_rate),
            met=verify_rate >= P6_VERIFY_GOAL and figures["verify"]["ok"],
            details=figures["verify"],
        ),
    ]

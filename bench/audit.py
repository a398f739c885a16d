"""P6 and P7: the audit trail's cost per audited request, its speed with 8 writers, and its
verification speed.

Measured in a Django process of its own (bench.audit_probe) on the served stack's database
(PostgreSQL in the production-like run), so the figures include the real lock, insert and
commit. The probe appends only through `audit_event_record` and verifies only with
`audit_chain_verify`: it measures whatever the audit app does behind them.
"""

import json
import subprocess
import sys
from typing import Any

from bench.report import Goal
from tests.e2e.server import REPO_ROOT, ServedGatehouse

P6_APPEND_GOAL_MS = 1.0
P6_VERIFY_GOAL = 100_000
P7_GOAL = 5_000
P7_WRITERS = 8


def audit_probe(
    served: ServedGatehouse, *, appends: int, events: int, seconds: float, request_path_appends: int
) -> dict[str, Any]:
    """Run bench.audit_probe on the stack's database; its figures (see the probe's docstring).

    `appends` = 0 leaves P6a's per-append costs out; `request_path_appends` = 0, P7's
    event-loop writers and its floor (as many plain rows).
    """
    result = subprocess.run(  # noqa: S603 - our own interpreter and module, fixed arguments
        [sys.executable, "-m", "bench.audit_probe", "--appends", str(appends), "--events", str(events),
         "--seconds", str(seconds), "--writers", str(P7_WRITERS),
         "--request-path-appends", str(request_path_appends), "--floor-appends", str(request_path_appends)],
        cwd=REPO_ROOT, env=served.env, capture_output=True, text=True, check=False, timeout=seconds + 900,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"bench.audit_probe failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    figures: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures


def goals_p6(figures: dict[str, Any]) -> list[Goal]:
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
            details={key: figures[key] for key in ("database", "append")},
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


def goal_p7(figures: dict[str, Any]) -> Goal:
    """P7 on PostgreSQL only: SQLite serialises writers by design, so there it is not measured.

    The goal is judged on the writer processes, each appending in its own transaction, as the
    goal was set. `request_path` reports the same 8 writers on the path a served chat's record
    takes (one event loop, overlapping appends sharing an INSERT), beside it; `floor`, 8
    processes inserting the same rows with psycopg alone, and `vs_floor`, the writers' rate
    over the floor's: what this machine's database leaves to any Python writer.
    """
    concurrent, verify = figures["concurrent"], figures["verify"]
    goal = Goal(
        id="P7",
        measure=f"audited events/s with {P7_WRITERS} concurrent writers (processes, PostgreSQL); "
        "chain verification kept (links and checkpoints)",
        goal=f">= {P7_GOAL:,}/s; >= {P6_VERIFY_GOAL // 1000}k/s verify",
        anchor="one chain lock today: 818/s",
        details={
            "database": figures["database"],
            "concurrent": concurrent,
            "request_path": figures.get("request_path"),
            "floor": figures.get("floor"),
            "verify": verify,
        },
    )
    floor_rate = (figures.get("floor") or {}).get("appends_per_s")
    if floor_rate:
        goal.details["vs_floor"] = round(concurrent["appends_per_s"] / floor_rate, 2)
    if figures["database"] != "postgresql":
        goal.details["not_measured"] = "the goal is set on PostgreSQL (the embedded run uses SQLite)"
        return goal
    goal.measured = float(concurrent["appends_per_s"])
    goal.met = (
        goal.measured >= P7_GOAL
        and verify["links_and_checkpoints_events_per_s"] >= P6_VERIFY_GOAL
        and bool(verify["ok"])
    )
    return goal

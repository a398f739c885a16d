"""The benchmark's report: the side-by-side rows (direct, floor, gateway) and the goal table.

Each row is one measure taken on the three sides in the same run; the floor and the gateway
are shown against direct (added milliseconds, or a share of its throughput), and the
gateway's CPU against the floor's. Each goal says what it measured and whether that meets it.
"""

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal


@dataclass
class Goal:
    id: str
    measure: str
    goal: str
    anchor: str
    # The measured figure in the goal's terms (a ratio, unless the goal says otherwise).
    measured: float | None = None
    # Whether `measured` meets the goal; None when it could not be measured.
    met: bool | None = None
    # The raw figures behind the ratio, so a reader can check the arithmetic.
    details: dict[str, object] = field(default_factory=dict)
    # A figure the report gives with no goal to meet (the GPU's roofline ratio).
    reported_only: bool = False

    @property
    def verdict(self) -> str:
        if self.reported_only and self.measured is not None:
            return "reported"
        return {True: "pass", False: "short", None: "not measured"}[self.met]


# How a row compares a side: its value minus direct's, its value over direct's, or (the
# gateway's) its value over the floor's; "" when the row is not compared.
Versus = Literal["added", "ratio", "floor", ""]


@dataclass
class Row:
    """One measure on the three sides; None where a side does not take part."""

    measure: str
    unit: str
    direct: float | None = None
    floor: float | None = None
    gateway: float | None = None
    versus: Versus = ""
    # The gateway's goal on this row ("P1: <= +3 ms"), or "".
    goal: str = ""

    def compared(self, side: Literal["floor", "gateway"]) -> float | None:
        """`side`'s value compared as `versus` says; None when it cannot be."""
        value = self.floor if side == "floor" else self.gateway
        base = self.floor if self.versus == "floor" else self.direct
        if value is None or base is None or not self.versus or (self.versus == "floor" and side == "floor"):
            return None
        if self.versus == "added":
            return value - base
        return value / base if base else None


def _cell(row: Row, side: Literal["direct", "floor", "gateway"]) -> str:
    value = getattr(row, side)
    if value is None:
        return "-"
    text = f"{value:.2f}"
    compared = None if side == "direct" else row.compared(side)
    if compared is None:
        return text
    if row.versus == "added":
        return f"{text} ({compared:+.2f})"
    return f"{text} ({compared:.2f}x{' floor' if row.versus == 'floor' else ''})"


def _rows_table(rows: list[Row]) -> list[str]:
    if not rows:
        return []
    return [
        "| side by side | unit | direct | floor | gateway | gateway goal |",
        "|---|---|---|---|---|---|",
        *(
            f"| {row.measure} | {row.unit} | {_cell(row, 'direct')} | {_cell(row, 'floor')} "
            f"| {_cell(row, 'gateway')} | {row.goal or '-'} |"
            for row in rows
        ),
        "",
    ]


def _row(goal: Goal) -> str:
    measured = "n/a" if goal.measured is None else f"{goal.measured:.2f}"
    return f"| {goal.id} | {goal.measure} | {goal.goal} | {goal.anchor} | {measured} | {goal.verdict} |"


def report_markdown(goals: list[Goal], *, context: dict[str, object], rows: list[Row] | None = None) -> str:
    lines = [
        *_rows_table(rows or []),
        "| id | measure | goal | anchor | measured | verdict |",
        "|---|---|---|---|---|---|",
        *(_row(goal) for goal in goals),
        "",
        *(f"- {key}: {value}" for key, value in context.items()),
        "",
        "Details:",
        "",
        *(f"- {goal.id}: {json.dumps(goal.details, sort_keys=True)}" for goal in goals),
    ]
    return "\n".join(lines) + "\n"


def _row_data(row: Row) -> dict[str, object]:
    return asdict(row) | {
        "floor_compared": row.compared("floor"),
        "gateway_compared": row.compared("gateway"),
    }


def report_write(
    goals: list[Goal], *, context: dict[str, object], directory: Path, rows: list[Row] | None = None
) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    markdown = directory / "bench.md"
    markdown.write_text(report_markdown(goals, context=context, rows=rows))
    data = directory / "bench.json"
    data.write_text(
        json.dumps(
            {
                "context": context,
                "rows": [_row_data(row) for row in rows or []],
                "goals": [asdict(goal) | {"verdict": goal.verdict} for goal in goals],
            },
            indent=2,
        )
    )
    return markdown, data

"""The benchmark's result table: goal, anchor, measured ratio, pass or short."""

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


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

    @property
    def verdict(self) -> str:
        return {True: "pass", False: "short", None: "not measured"}[self.met]


def _row(goal: Goal) -> str:
    measured = "" if goal.measured is None else f"{goal.measured:.2f}"
    return f"| {goal.id} | {goal.measure} | {goal.goal} | {goal.anchor} | {measured} | {goal.verdict} |"


def report_markdown(goals: list[Goal], *, context: dict[str, object]) -> str:
    lines = [
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


def report_write(goals: list[Goal], *, context: dict[str, object], directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    markdown = directory / "bench.md"
    markdown.write_text(report_markdown(goals, context=context))
    data = directory / "bench.json"
    data.write_text(
        json.dumps(
            {"context": context, "goals": [asdict(goal) | {"verdict": goal.verdict} for goal in goals]},
            indent=2,
        )
    )
    return markdown, data

"""Figures the reliability suite measured, kept beside the run (test-artifacts/reliability/)."""

import json
from pathlib import Path
from typing import Any

from tests.e2e.server import REPO_ROOT

DIRECTORY = REPO_ROOT / "test-artifacts" / "reliability"


def figures_write(name: str, figures: dict[str, Any]) -> Path:
    """Write one scenario's figures as JSON; the note and a reader of CI's output quote them."""
    DIRECTORY.mkdir(parents=True, exist_ok=True)
    path = DIRECTORY / f"{name}.json"
    path.write_text(json.dumps(figures, indent=2, sort_keys=True))
    return path

"""P11 (reported, no goal in SPEC §8): what the guardrail pipeline costs a request and a
streamed token, measured by `bench.guardrail_probe` on the stack's settings."""

import json
import subprocess
import sys
from typing import Any

from bench.report import Goal
from tests.e2e.server import REPO_ROOT, ServedGatehouse


def measure_p11(served: ServedGatehouse) -> Goal:
    result = subprocess.run(
        [sys.executable, "-m", "bench.guardrail_probe"],
        cwd=REPO_ROOT, env=served.env, capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"bench.guardrail_probe failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    figures: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return Goal(
        id="P11",
        measure="guardrail pipeline: the request check of a chat of about 1 KB (microseconds, p50, "
        "with an email address redacted), and per streamed token of the answer's redaction in details",
        goal="reported",
        anchor="-",
        measured=figures["request_us"]["with_an_email"],
        details={**figures, "unit": "microseconds"},
        reported_only=True,
    )

"""The restore drill (`make restore-drill`, gatehouse.restore_drill) on the suite's PostgreSQL:
a populated stack backed up as the backup jobs do, restored with pg_restore into a fresh
database, where audit_verify passes and a chat runs; and a restored trail that was altered is
caught by the same verification.
"""

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from gatehouse.restore_drill import Drill, DrillFailed, drill_run, drop, verify
from tests.celery_worker import database_url

pytestmark = pytest.mark.reliability


@pytest.fixture
def drill(tmp_path: Path) -> Iterator[Drill]:
    database = settings.DATABASES["default"]
    server = database_url({**database, "NAME": ""}).rstrip("/")
    # Scratch databases of this suite's own, named after its test database.
    prefix = f"{database['NAME']}_drill"
    scratch = Drill(server=server, source=f"{prefix}_src", target=f"{prefix}_dst", workdir=tmp_path)
    yield scratch
    drop(scratch)


def test_a_backup_restores_into_a_stack_whose_trail_verifies_and_that_serves_chats(
    drill: Drill, tmp_path: Path
) -> None:
    result = drill_run(drill)
    assert result.report["ok"] is True
    assert int(str(result.report["checkpoints_checked"])) >= 1
    assert int(str(result.report["events"])) > 0
    for step in (
        "pg_restore into the target",
        "audit_verify on the restored database",
        "a chat on the restored database",
    ):
        assert f"ok: {step}" in drill.log
    # The conversation was stored encrypted, and only the master key (never in the backup) opens it.
    rows = drill.run(
        [
            "psql", "--no-psqlrc", "--tuples-only", "--dbname", drill.url(drill.target), "-c",
            "SELECT count(*) FILTER (WHERE content LIKE '%restore drill%'), count(*) FROM inference_message",
        ],
        step="look for plain text in the restored database",
    )  # fmt: skip
    plain, stored = (int(part) for part in rows.split("|"))
    assert plain == 0
    assert stored >= 2
    without_the_key = {**result.target_env, "GATEHOUSE_ENCRYPTION_KEYS": f"other:{'A' * 43}="}
    with pytest.raises(DrillFailed, match="not in GATEHOUSE_ENCRYPTION_KEYS"):
        drill.run(
            [
                sys.executable,
                "-m",
                "gatehouse.restore_drill_stack",
                "chat",
                "--state",
                str(tmp_path / "drill-state.json"),
            ],
            env=without_the_key,
            step="read the stored conversation without its master key",
        )
    # The drill's verification is not a formality: alter one restored event and it fails.
    drill.run(
        [
            "psql", "--no-psqlrc", "--set=ON_ERROR_STOP=1", "--dbname", drill.url(drill.target), "-c",
            "ALTER TABLE audit_auditevent DISABLE TRIGGER USER; "
            "UPDATE audit_auditevent SET action = 'tampered' WHERE sequence = 2; "
            "ALTER TABLE audit_auditevent ENABLE TRIGGER USER",
        ],
        step="alter the restored trail",
    )  # fmt: skip
    with pytest.raises(DrillFailed, match="audit_verify"):
        verify(drill, env=result.target_env, step="audit_verify after tampering")

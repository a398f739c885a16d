"""The migration that moved sealing off the request path keeps the trail it finds valid.

A trail written by the previous code (every row sealed as it was appended, under the lock) is
migrated forward: its rows keep their sequence numbers and hashes, its checkpoint still matches,
and new events are sealed after its head. Run with no outer transaction, as `migrate` runs.
"""

from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from accounts.models import User
from audit import chain
from audit.checkpoints import audit_checkpoint_write
from audit.models import AuditEvent
from audit.services import audit_event_record, chained_values
from audit.verification import audit_chain_verify
from tests.audit.sealed import sealed

BEFORE = ("audit", "0004_compliance_permissions")
AFTER = ("audit", "0005_sealing")


def _migrate(target: tuple[str, str]) -> Any:
    executor = MigrationExecutor(connection)
    executor.migrate([target])
    return MigrationExecutor(connection).loader.project_state([target]).apps


def _append_as_before(apps: Any, count: int) -> None:
    """What the previous `audit_event_record` did: read the head, hash, insert sealed."""
    old_event = apps.get_model("audit", "AuditEvent")
    head = old_event.objects.order_by("-sequence").values_list("sequence", "hash").first()
    sequence, previous = head if head else (0, chain.GENESIS)
    empty = chain.personal_digest(b"", ["system", "", ""])
    for n in range(count):
        sequence += 1
        event = old_event(
            sequence=sequence,
            occurred_at=timezone.now(),
            actor_kind="system",
            actor_display="system",
            action="test.before_sealing",
            metadata_json=chain.metadata_canonical({"n": n}),
            actor_digest=empty,
            target_digest=chain.personal_digest(b"", [""]),
        )
        event.hash = previous = chain.link_hash(previous, chain.event_canonical(chained_values(event)))
        event.save(force_insert=True)


@pytest.mark.django_db(transaction=True)
def test_rows_sealed_before_the_migration_stay_valid_after_it(alice: User) -> None:
    sealed()
    try:
        apps = _migrate(BEFORE)
        _append_as_before(apps, 5)
        before = list(
            apps.get_model("audit", "AuditEvent").objects.order_by("sequence").values_list("sequence", "hash")
        )
    finally:
        _migrate(AFTER)
    checkpoint = audit_checkpoint_write()
    assert checkpoint is not None
    after = list(AuditEvent.objects.order_by("sequence").values_list("sequence", "hash"))
    assert after == before
    assert set(AuditEvent.objects.values_list("row_digest", flat=True)) == {""}
    report = audit_chain_verify()
    assert report.ok, report.as_dict()
    assert report.head_sequence == before[-1][0]

    (new,) = sealed(audit_event_record(action="test.after_sealing", actor=alice))
    assert new.sequence == before[-1][0] + 1
    report = audit_chain_verify()
    assert report.ok, report.as_dict()
    assert report.checkpoints_checked == 1

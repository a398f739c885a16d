"""Scheduled housekeeping for identity (Celery beat runs it; see CELERY_BEAT_SCHEDULE)."""

from celery import shared_task
from django.db import transaction
from guardian.utils import clean_orphan_obj_perms

from audit.models import AuditEvent
from audit.services import audit_event_record


@shared_task(name="accounts.tasks.object_permissions_sweep", ignore_result=True)
def object_permissions_sweep() -> int:
    """Delete object permissions whose object no longer exists; audit how many.

    One transaction: if the record cannot be written, the permissions stay.
    """
    with transaction.atomic():
        removed = int(clean_orphan_obj_perms())
        if removed:
            audit_event_record(
                action="permission.orphans_removed",
                actor_display="system",
                actor_kind=AuditEvent.ActorKind.SYSTEM,
                metadata={"removed": removed},
            )
    return removed


@shared_task(name="accounts.tasks.quota_counters_sweep", ignore_result=True)
def quota_counters_sweep() -> int:
    """Drop the SQL ledger's counters of windows long over (Redis expires its own)."""
    from accounts.quotas.sql_ledger import quota_counters_sweep as sweep

    return sweep()


@shared_task(name="accounts.tasks.usage_records_flush", ignore_result=True)
def usage_records_flush() -> int:
    """Write buffered usage records in bulk."""
    from accounts.services.usage import usage_records_flush as flush

    return flush()


@shared_task(name="accounts.tasks.usage_rollup", ignore_result=True)
def usage_rollup(period: str) -> int:
    """Recompute the hourly or daily usage rollups of the latest periods."""
    from accounts.services.usage import usage_records_flush
    from accounts.services.usage import usage_rollup as rollup

    usage_records_flush()  # what waits in the buffer belongs in the totals
    return rollup(period=period)

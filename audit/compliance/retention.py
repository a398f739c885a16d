"""Retention: stored conversations and raw usage rows do not live forever. Each purge is audited."""

from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models.functions import TruncDate

from accounts.models import UsageRecord, UsageRollup
from accounts.services.usage import usage_rollup
from audit.models import AuditEvent
from audit.services import audit_event_record
from inference.models import Conversation, Message


def _record(action: str, *, count: int, days: int, cutoff: datetime, **extra: object) -> None:
    audit_event_record(
        action=action,
        actor_kind=AuditEvent.ActorKind.SYSTEM,
        actor_display="retention",
        metadata={"count": count, "retention_days": days, "cutoff": cutoff.isoformat(), **extra},
    )


@transaction.atomic
def retention_conversations_purge(*, now: datetime | None = None) -> int:
    """Delete conversations untouched for `GATEHOUSE_RETENTION_CONVERSATION_DAYS`; 0 keeps all."""
    days = settings.GATEHOUSE_RETENTION_CONVERSATION_DAYS
    if days <= 0:
        return 0
    cutoff = (now or datetime.now(tz=UTC)) - timedelta(days=days)
    old = Conversation.objects.filter(updated_at__lt=cutoff)
    messages = Message.objects.filter(conversation__in=old).count()
    purged = old.delete()[1].get(Conversation._meta.label, 0)
    if purged:
        _record("retention.conversations.purged", count=purged, days=days, cutoff=cutoff, messages=messages)
    return purged


def retention_usage_records_purge(*, now: datetime | None = None) -> int:
    """Delete raw usage rows older than `GATEHOUSE_RETENTION_USAGE_RECORD_DAYS`, a whole day at
    a time, each day's hourly and daily rollups recomputed from its rows just before they go.

    So a day is only ever purged with its rollups complete, even if beat missed its rollups.
    """
    days = settings.GATEHOUSE_RETENTION_USAGE_RECORD_DAYS
    if days <= 0:
        return 0
    now = now or datetime.now(tz=UTC)
    cutoff = (now - timedelta(days=days)).replace(hour=0, minute=0, second=0, microsecond=0)
    old_days = sorted(
        UsageRecord.objects.filter(created_at__lt=cutoff)
        .annotate(day=TruncDate("created_at", tzinfo=UTC))
        .values_list("day", flat=True)
        .distinct()
    )
    purged = 0
    for day in old_days:
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        with transaction.atomic():
            usage_rollup(period=UsageRollup.Period.DAY, now=start, periods_back=0)
            # The day's last hour as "now", 23 back: its 24 hourly rollups.
            usage_rollup(period=UsageRollup.Period.HOUR, now=start + timedelta(hours=23), periods_back=23)
            day_rows = UsageRecord.objects.filter(
                created_at__gte=start, created_at__lt=start + timedelta(days=1)
            )
            deleted = day_rows.delete()[0]
            # In the purge's own transaction: no rows leave without the record saying so.
            _record(
                "retention.usage_records.purged", count=deleted, days=days, cutoff=cutoff, day=day.isoformat()
            )
            purged += deleted
    return purged

"""Retention: old conversations and raw usage rows are purged on schedule, each purge audited,
and usage leaves only once its day's rollups are complete."""

from datetime import UTC, datetime, timedelta
from typing import Any

from accounts.models import UsageRecord, UsageRollup, User
from audit.compliance import retention_conversations_purge, retention_usage_records_purge
from audit.models import AuditEvent
from inference.models import Conversation, Message, Model
from inference.services import model_register

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def _conversation(owner: User, model: Model, *, age_days: int) -> Conversation:
    conversation = Conversation.objects.create(owner=owner, model=model, title=f"{age_days} days")
    Message.objects.create(conversation=conversation, role="user", content="hello")
    Conversation.objects.filter(pk=conversation.pk).update(updated_at=NOW - timedelta(days=age_days))
    return conversation


def test_conversations_past_their_age_are_purged_and_audited(alice: User, bob: User, settings: Any) -> None:
    settings.GATEHOUSE_RETENTION_CONVERSATION_DAYS = 365
    model = model_register(name="kept-model", actor=alice)
    old = _conversation(bob, model, age_days=400)
    recent = _conversation(bob, model, age_days=10)
    assert retention_conversations_purge(now=NOW) == 1
    assert list(Conversation.objects.values_list("pk", flat=True)) == [recent.pk]
    assert not Message.objects.filter(conversation_id=old.pk).exists()
    event = AuditEvent.objects.get(action="retention.conversations.purged")
    assert (event.metadata["count"], event.metadata["messages"], event.metadata["retention_days"]) == (
        1,
        1,
        365,
    )
    # Nothing left to purge: no run, no record.
    assert retention_conversations_purge(now=NOW) == 0
    assert AuditEvent.objects.filter(action="retention.conversations.purged").count() == 1


def test_zero_days_keeps_conversations(alice: User, bob: User, settings: Any) -> None:
    settings.GATEHOUSE_RETENTION_CONVERSATION_DAYS = 0
    _conversation(bob, model_register(name="kept-model", actor=alice), age_days=5000)
    assert retention_conversations_purge(now=NOW) == 0
    assert Conversation.objects.count() == 1


def _usage(user: User, at: datetime, tokens: int) -> None:
    UsageRecord.objects.create(
        created_at=at,
        user_id=user.pk,
        channel="api",
        prompt_tokens=tokens,
        completion_tokens=1,
        outcome="completed",
    )


def test_usage_rows_leave_only_with_their_days_rollups_complete(bob: User, settings: Any) -> None:
    settings.GATEHOUSE_RETENTION_USAGE_RECORD_DAYS = 90
    old_day = (NOW - timedelta(days=100)).replace(hour=0, minute=0)
    _usage(bob, old_day + timedelta(hours=3), 10)
    _usage(bob, old_day + timedelta(hours=20), 5)
    _usage(bob, NOW - timedelta(hours=1), 7)
    # No rollup ever ran for that day (beat was down): the purge makes them first.
    assert not UsageRollup.objects.exists()
    assert retention_usage_records_purge(now=NOW) == 2
    assert UsageRecord.objects.count() == 1
    daily = UsageRollup.objects.get(period="day", period_start=old_day)
    assert (daily.requests, daily.prompt_tokens) == (2, 15)
    hourly = UsageRollup.objects.filter(
        period="hour", period_start__gte=old_day, period_start__lt=old_day + timedelta(days=1)
    )
    assert sorted(row.prompt_tokens for row in hourly) == [5, 10]
    event = AuditEvent.objects.get(action="retention.usage_records.purged")
    assert (event.metadata["count"], event.metadata["day"]) == (2, old_day.date().isoformat())

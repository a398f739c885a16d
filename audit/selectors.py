"""Reads of the audit trail for the auditor API and exports."""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import QuerySet

from audit.checkpoints import checkpoint_latest
from audit.models import AuditEvent, AuditSubject


@dataclass(frozen=True)
class AuditEventFilter:
    """What an auditor may narrow the trail by. Every field is optional."""

    action: str = ""
    actor: str = ""
    actor_kind: str = ""
    target_type: str = ""
    target_id: str = ""
    outcome: str = ""
    request_id: str = ""
    since: datetime | None = None
    until: datetime | None = None
    sequence_from: int | None = None
    sequence_to: int | None = None


def _actor_pseudonyms(actor: str) -> list[str]:
    """An actor is named by pseudonym, or by the username the mapping still holds."""
    return [
        str(pseudonym)
        for pseudonym in AuditSubject.objects.filter(display=actor).values_list("pseudonym", flat=True)
    ] or [actor]


def audit_events_filtered(*, criteria: AuditEventFilter) -> QuerySet[AuditEvent]:
    """Events matching `criteria`, newest first. An `action` ending in "." matches a family."""
    events = AuditEvent.objects.all()
    if criteria.action:
        events = (
            events.filter(action__startswith=criteria.action)
            if criteria.action.endswith(".")
            else events.filter(action=criteria.action)
        )
    if criteria.actor:
        pseudonyms = _actor_pseudonyms(criteria.actor)
        events = events.filter(actor_pseudonym__in=[p for p in pseudonyms if _is_uuid(p)] or [None])
    exact = {
        "actor_kind": criteria.actor_kind,
        "target_type": criteria.target_type,
        "target_id": criteria.target_id,
        "outcome": criteria.outcome,
        "request_id": criteria.request_id,
    }
    events = events.filter(**{name: value for name, value in exact.items() if value})
    if criteria.since is not None:
        events = events.filter(occurred_at__gte=criteria.since)
    if criteria.until is not None:
        events = events.filter(occurred_at__lt=criteria.until)
    if criteria.sequence_from is not None:
        events = events.filter(sequence__gte=criteria.sequence_from)
    if criteria.sequence_to is not None:
        events = events.filter(sequence__lte=criteria.sequence_to)
    return events.order_by("-sequence")


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def audit_chain_range(*, sequence_from: int, sequence_to: int) -> QuerySet[AuditEvent]:
    """A contiguous stretch of the chain, oldest first: what an export covers."""
    return AuditEvent.objects.filter(sequence__gte=sequence_from, sequence__lte=sequence_to).order_by(
        "sequence"
    )


def audit_head_sequence() -> int:
    head = AuditEvent.objects.order_by("-sequence").values_list("sequence", flat=True).first()
    return int(head or 0)


def audit_chain_status() -> dict[str, Any]:
    """The trail's head and its last signed checkpoint: cheap to read on every page view.

    Full verification walks the whole chain; the audit pages link to it instead.
    """
    head = AuditEvent.objects.order_by("-sequence").values("sequence", "hash", "occurred_at").first()
    latest = checkpoint_latest()
    sealed_hash = (
        AuditEvent.objects.filter(sequence=latest.sequence).values_list("hash", flat=True).first()
        if latest
        else None
    )
    return {
        "head_sequence": head["sequence"] if head else 0,
        "head_at": head["occurred_at"] if head else None,
        "checkpoint_sequence": latest.sequence if latest else None,
        "checkpoint_at": latest.written_at if latest else None,
        "checkpoint_matches": (sealed_hash == latest.hash) if latest else None,
        "unsealed_events": (head["sequence"] - latest.sequence)
        if head and latest
        else (head["sequence"] if head else 0),
    }

"""Reads of the audit trail for the auditor API and exports.

Lists run in insertion order (`id`): every row has one from its insert, while its chain
position (`sequence`) comes a moment later from the sealer, so a list by sequence would miss
(or misplace) the newest events. Chain ranges and the head are about sealed events only.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Count, Exists, Max, Min, OuterRef, Q, QuerySet
from django.utils import timezone

from audit.checkpoints import checkpoint_latest
from audit.models import (
    AuditEvent,
    AuditSubject,
    ComplianceRequest,
    ErasureRequest,
    ExportRequest,
    VerificationRun,
)


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
    """Events matching `criteria`, newest first (by insertion, sealed or not). An `action` ending
    in "." matches a family; a sequence bound matches sealed events only."""
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
    return events.order_by("-id")


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


def _sealed() -> QuerySet[AuditEvent]:
    return AuditEvent.objects.filter(sequence__isnull=False)


def audit_head_sequence() -> int:
    """The last sealed sequence number; 0 for an empty chain."""
    head = _sealed().order_by("-sequence").values_list("sequence", flat=True).first()
    return int(head or 0)


def audit_pending_status() -> dict[str, Any]:
    """Rows written but not sealed yet: how many, and how many seconds the oldest has waited
    (None when none wait). One index range (the pending index), cheap while the sealer keeps up."""
    found = AuditEvent.objects.filter(sequence__isnull=True).aggregate(
        count=Count("id"), oldest=Min("occurred_at")
    )
    oldest = found["oldest"]
    return {
        "pending_events": int(found["count"] or 0),
        "pending_oldest_seconds": max(0.0, (timezone.now() - oldest).total_seconds()) if oldest else None,
    }


def audit_chain_status() -> dict[str, Any]:
    """The chain's sealed head, its last signed checkpoint, and the rows not sealed yet: cheap
    to read on every page view and every scrape.

    `unsealed_events` counts the events no checkpoint covers yet: sealed past the last one, and
    `pending_events`, those the sealer has not linked into the chain yet. Full verification walks the whole chain; the audit pages
    link to it instead.
    """
    head = _sealed().order_by("-sequence").values("sequence", "hash", "occurred_at").first()
    head_sequence = int(head["sequence"] or 0) if head else 0
    pending = audit_pending_status()
    latest = checkpoint_latest()
    sealed_hash = (
        AuditEvent.objects.filter(sequence=latest.sequence).values_list("hash", flat=True).first()
        if latest
        else None
    )
    return {
        "head_sequence": head_sequence,
        "head_at": head["occurred_at"] if head else None,
        "checkpoint_sequence": latest.sequence if latest else None,
        "checkpoint_at": latest.written_at if latest else None,
        "checkpoint_matches": (sealed_hash == latest.hash) if latest else None,
        "unsealed_events": (head_sequence - latest.sequence if head and latest else head_sequence)
        + pending["pending_events"],
        **pending,
    }


@dataclass(frozen=True)
class ComplianceFigures:
    """One kind of data-protection request (exports or erasures), as /metrics exports it."""

    by_status: dict[str, int]
    # Past their legal deadline and unanswered: open ones, and failed ones not asked again.
    overdue: int
    # Failed, with the person still there and no request of the same kind asked for them since.
    failed_unresolved: int
    # How long the oldest pending or running request has waited since it was asked (0: none).
    open_oldest_seconds: float


def compliance_request_figures(*, now: datetime | None = None) -> dict[str, ComplianceFigures]:
    """Exports and erasures by status, overdue, failed and not asked again, and the oldest
    still open: one aggregate query per kind, cheap enough for every scrape.

    A failed request is answered by asking again for the same person (the console's queue),
    which resolves it: it then counts neither as a failure awaiting someone nor as overdue.
    One whose person is gone (erased since, or deleted) has nobody left to answer.
    """
    now = now or timezone.now()
    status = ComplianceRequest.Status
    kinds: tuple[tuple[str, type[ExportRequest] | type[ErasureRequest]], ...] = (
        ("export", ExportRequest),
        ("erasure", ErasureRequest),
    )
    figures = {}
    for kind, model in kinds:
        asked_again = model.objects.filter(
            subject_pseudonym=OuterRef("subject_pseudonym"), created_at__gt=OuterRef("created_at")
        )
        unresolved = Q(~Exists(asked_again), status=status.FAILED, subject__isnull=False)
        found = model.objects.aggregate(
            **{value: Count("pk", filter=Q(status=value)) for value in status.values},
            overdue=Count(
                "pk", filter=Q(due_at__lt=now) & (Q(status__in=[status.PENDING, status.RUNNING]) | unresolved)
            ),
            failed_unresolved=Count("pk", filter=unresolved),
            open_oldest=Min("created_at", filter=Q(status__in=[status.PENDING, status.RUNNING])),
        )
        oldest = found["open_oldest"]
        figures[kind] = ComplianceFigures(
            by_status={value: int(found[value]) for value in status.values},
            overdue=int(found["overdue"]),
            failed_unresolved=int(found["failed_unresolved"]),
            open_oldest_seconds=max(0.0, (now - oldest).total_seconds()) if oldest else 0.0,
        )
    return figures


@dataclass(frozen=True)
class VerificationFigures:
    """The recorded runs of the trail's verification (`VerificationRun`), as /metrics exports them."""

    runs: dict[str, int]  # by result: passed, failed, error
    # When the last run that checked the whole trail (passed or failed) ended; None: none has.
    last_at: datetime | None
    # Whether that run passed; None when there is none.
    last_passed: bool | None
    # When the last run that passed ended; None: none has.
    last_passed_at: datetime | None


def audit_verification_figures() -> VerificationFigures:
    """One aggregate query over the recorded verification runs (a row a day or so).

    A run that ended in an error checked nothing: it is counted, but it is neither the last
    run nor a pass, so a verification that keeps failing to finish grows stale.
    """
    result = VerificationRun.Result
    found = VerificationRun.objects.aggregate(
        **{value: Count("pk", filter=Q(result=value)) for value in result.values},
        last_at=Max("finished_at", filter=Q(result__in=[result.PASSED, result.FAILED])),
        last_passed_at=Max("finished_at", filter=Q(result=result.PASSED)),
    )
    last_at, last_passed_at = found["last_at"], found["last_passed_at"]
    return VerificationFigures(
        runs={value: int(found[value]) for value in result.values},
        last_at=last_at,
        last_passed=None if last_at is None else last_passed_at == last_at,
        last_passed_at=last_passed_at,
    )

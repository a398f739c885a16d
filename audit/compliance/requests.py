"""What exports and erasures share: who may ask, the deadline, queueing, claiming, the sweeper.

A request is worked by a Celery task that takes only its id. The task is queued when the
request's row commits; it claims the row under a lock, so a message delivered twice (acks_late
redelivery, or the sweeper's re-queue racing a slow worker) runs the work once.
"""

import logging
import math
from datetime import datetime, timedelta
from typing import TypeVar

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import User
from accounts.roles import Role, user_holds_role
from audit.models import AuditEvent, ComplianceRequest, ErasureRequest, ExportRequest
from audit.services import audit_event_record
from audit.subjects import audit_pseudonym

logger = logging.getLogger(__name__)

_R = TypeVar("_R", ExportRequest, ErasureRequest)
# GDPR Art. 12(3): an answer within one month of the request.
LEGAL_DEADLINE = timedelta(days=30)
_OPEN = (ComplianceRequest.Status.PENDING, ComplianceRequest.Status.RUNNING)


class ComplianceRefused(Exception):
    """The request cannot be made as asked; the message says why, for the person asking."""

    def __init__(
        self, message: str, *, existing: ComplianceRequest | None = None, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.existing = existing
        # Set when the request may be made again later: seconds until then.
        self.retry_after = retry_after


def compliance_officer_is(*, user: AbstractBaseUser) -> bool:
    """Compliance officers and admins handle requests for anyone (SPEC §4)."""
    return user_holds_role(user, Role.ADMIN, Role.COMPLIANCE_OFFICER)


def compliance_due_at(*, asked_at: datetime) -> datetime:
    return asked_at + LEGAL_DEADLINE


def _kind(model: type[ComplianceRequest]) -> str:
    return "export" if model is ExportRequest else "erasure"


def _finished_within(model: type[_R], subject: User, cooldown: timedelta, now: datetime) -> _R | None:
    """The subject's request that finished (done) most recently, if within `cooldown` of `now`."""
    if cooldown <= timedelta(0):
        return None
    return (
        model.objects.filter(subject=subject, status=model.Status.DONE, finished_at__gt=now - cooldown)
        .order_by("-finished_at")
        .first()
    )


def compliance_request_open(
    *, model: type[_R], subject: User, requested_by: User, what: str, cooldown: timedelta = timedelta(0)
) -> _R:
    """Record a new request for `subject` and queue its work; in the caller's transaction.

    Refused when the caller is neither the subject nor an officer, when one is already open
    for the subject, and when one for the subject was done less than `cooldown` ago, whoever
    asked for it (the refusal then carries it, and when to ask again). `what` names it in
    messages.
    """
    if subject.pk != requested_by.pk and not compliance_officer_is(user=requested_by):
        raise ComplianceRefused(f"You may ask for {what} for yourself only.")
    existing = model.objects.select_for_update().filter(subject=subject, status__in=_OPEN).first()
    if existing is not None:
        raise ComplianceRefused(
            f"{what.capitalize()} for this person is already under way.", existing=existing
        )
    now = timezone.now()
    recent = _finished_within(model, subject, cooldown, now)
    if recent is not None and recent.finished_at is not None:
        again_at = recent.finished_at + cooldown
        raise ComplianceRefused(
            f"This person already has {what} finished at {recent.finished_at.isoformat()}; "
            f"use it, or ask for a new one after {again_at.isoformat()}.",
            existing=recent,
            retry_after=max(1, math.ceil((again_at - now).total_seconds())),
        )
    request = model.objects.create(
        subject=subject,
        subject_pseudonym=audit_pseudonym(user=subject),
        requested_by=requested_by,
        requested_by_pseudonym=audit_pseudonym(user=requested_by),
        created_at=now,
        due_at=compliance_due_at(asked_at=now),
    )
    audit_event_record(
        action=f"compliance.{_kind(model)}.requested",
        actor=requested_by,
        target=subject,
        metadata={"request": str(request.pk), "due_at": request.due_at.isoformat()},
    )
    compliance_task_queue(request=request)
    return request


def compliance_task_queue(*, request: ComplianceRequest) -> None:
    """Queue the request's task once the transaction that wrote it commits."""
    from audit import tasks  # the tasks import these services

    task = tasks.compliance_export_run if isinstance(request, ExportRequest) else tasks.compliance_erasure_run
    request_id = str(request.pk)
    transaction.on_commit(
        lambda: task.apply_async(args=(request_id,), queue=settings.GATEHOUSE_COMPLIANCE_QUEUE)
    )


def compliance_request_claim(*, model: type[_R], request_id: str) -> _R | None:
    """Take the request up for work; None when it is finished, or in a live worker's hands.

    Past `GATEHOUSE_COMPLIANCE_MAX_ATTEMPTS` the request is failed rather than run again:
    something in it kills workers, and a person has to look.
    """
    now = timezone.now()
    with transaction.atomic():
        request = model.objects.select_for_update().filter(pk=request_id).first()
        if request is None or request.status in (model.Status.DONE, model.Status.FAILED):
            return None
        stale_before = now - timedelta(seconds=settings.GATEHOUSE_COMPLIANCE_STALE_SECONDS)
        if (
            request.status == model.Status.RUNNING
            and request.heartbeat_at
            and request.heartbeat_at > stale_before
        ):
            return None
        if request.attempts >= settings.GATEHOUSE_COMPLIANCE_MAX_ATTEMPTS:
            compliance_request_fail(request=request, error=f"gave up after {request.attempts} attempts")
            return None
        request.status = model.Status.RUNNING
        request.attempts += 1
        request.started_at = request.heartbeat_at = now
        request.save(update_fields=["status", "attempts", "started_at", "heartbeat_at"])
    return request


def compliance_request_progress(*, request: ComplianceRequest, progress: int) -> None:
    """Record progress and show the worker is alive (its own small write, not the work's)."""
    request.progress = progress
    model: type[ExportRequest] | type[ErasureRequest] = (
        ExportRequest if isinstance(request, ExportRequest) else ErasureRequest
    )
    model.objects.filter(pk=request.pk).update(progress=progress, heartbeat_at=timezone.now())


def _system_record(
    request: ComplianceRequest, step: str, outcome: AuditEvent.Outcome, **details: object
) -> None:
    """Audit what the platform itself did to a request (failed it, re-queued it)."""
    audit_event_record(
        action=f"compliance.{_kind(type(request))}.{step}",
        actor_kind=AuditEvent.ActorKind.SYSTEM,
        actor_display="system",
        target_type="accounts.user",
        target_id=str(request.subject_id or ""),
        outcome=outcome,
        metadata={"request": str(request.pk), "subject": str(request.subject_pseudonym), **details},
    )


def compliance_request_fail(*, request: ComplianceRequest, error: str) -> None:
    with transaction.atomic():
        request.status = request.Status.FAILED
        request.error = error[:2000]
        request.finished_at = timezone.now()
        request.save(update_fields=["status", "error", "finished_at"])
        _system_record(request, "failed", AuditEvent.Outcome.FAILURE, error=error[:500])


def compliance_requests_sweep(*, now: datetime | None = None) -> int:
    """Re-queue requests a worker lost (heartbeat gone stale) or never took up. Returns how many.

    Beat runs it every few minutes. Re-queueing is safe at any time: the claim decides.
    """
    now = now or timezone.now()
    stale_before = now - timedelta(seconds=settings.GATEHOUSE_COMPLIANCE_STALE_SECONDS)
    requeued = 0
    models: tuple[type[ExportRequest] | type[ErasureRequest], ...] = (ExportRequest, ErasureRequest)
    for model in models:
        with transaction.atomic():
            lost = model.objects.select_for_update(skip_locked=True).filter(
                Q(status=model.Status.RUNNING, heartbeat_at__lt=stale_before)
                | Q(status=model.Status.PENDING, created_at__lt=stale_before)
            )
            for request in lost:
                was = request.status
                request.status = model.Status.PENDING
                request.save(update_fields=["status"])
                _system_record(
                    request, "requeued", AuditEvent.Outcome.SUCCESS, was=was, attempts=request.attempts
                )
                compliance_task_queue(request=request)
                requeued += 1
    return requeued

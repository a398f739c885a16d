"""Erasure: a person's data deleted, their access ended, the rest pseudonymised.

One transaction does it all, under a lock on the request row, so it either happened
completely or not at all, and a re-run (a redelivered task) finds it done. What must be kept
stays without a name: usage rows keep only a number nothing maps back to once the user row
is gone, and the audit trail keeps pseudonyms whose key and name are deleted, so the chain
still verifies. The request row keeps the evidence: counts of everything done.
"""

from typing import Any

from django.apps import apps
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.contrib.sessions.models import Session
from django.db import transaction
from django.utils import timezone
from django_otp import devices_for_user
from guardian.models import UserObjectPermission
from rest_framework_simplejwt.token_blacklist.models import OutstandingToken

from accounts.models import ApiKey, QuotaPolicy, UsageRecord, User
from accounts.roles import Role
from accounts.services.users import sessions_revoke_all
from audit.compliance.requests import (
    ComplianceRefused,
    compliance_officer_is,
    compliance_request_claim,
    compliance_request_fail,
    compliance_request_open,
)
from audit.console_log import console_subject_fields
from audit.models import AuditEvent, ErasureRequest, ExportRequest
from audit.services import audit_event_record
from audit.subjects import audit_subject_erase
from inference.models import Conversation, Message

_OPEN = (ErasureRequest.Status.PENDING, ErasureRequest.Status.RUNNING)


def _last_admin(user: User) -> bool:
    admins = User.objects.filter(is_active=True).filter(groups__name=Role.ADMIN.value).distinct()
    return bool(admins.filter(pk=user.pk).exists() and admins.count() == 1)


def compliance_erasure_refusal(*, subject: User) -> str | None:
    """Why `subject` cannot be erased now, if they cannot (shared with the console's form)."""
    if _last_admin(subject):
        return "This is the last active administrator; appoint another before erasing them."
    return None


@transaction.atomic
def compliance_erasure_request(*, subject: User, requested_by: User) -> ErasureRequest:
    """Ask for `subject` to be erased; the caller must be them or a compliance officer."""
    refusal = compliance_erasure_refusal(subject=subject)
    # Only someone entitled to ask hears why it cannot be done (the opener refuses the rest).
    if refusal and (subject.pk == requested_by.pk or compliance_officer_is(user=requested_by)):
        raise ComplianceRefused(refusal)
    return compliance_request_open(
        model=ErasureRequest, subject=subject, requested_by=requested_by, what="an erasure"
    )


def _console_sessions_end(user: User) -> int:
    """Django keeps console sessions as encoded blobs; the user id is only inside them."""
    ended = 0
    for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator():
        if str(session.get_decoded().get("_auth_user_id")) == str(user.pk):
            session.delete()
            ended += 1
    return ended


def _console_log_forget(user: User) -> int:
    """The admin's change log names objects by their text (a username, a key's name): the
    entries about the user and about every object of theirs (see `audit.console_log`)."""
    about: list[tuple[ContentType, list[str]]] = [(ContentType.objects.get_for_model(User), [str(user.pk)])]
    for label, field in console_subject_fields().items():
        try:
            model = apps.get_model(label)
        except LookupError:
            continue
        ids = model._base_manager.filter(**{field: user}).values_list("pk", flat=True)
        about.append(
            (ContentType.objects.get_for_model(model, for_concrete_model=False), [str(pk) for pk in ids])
        )
    deleted = 0
    for content_type, ids in about:
        deleted += LogEntry.objects.filter(content_type=content_type, object_id__in=ids).delete()[0]
    return deleted + LogEntry.objects.filter(user=user).delete()[0]


def _exports_forget(user: User) -> int:
    """Built exports hold everything about the person: the files go, and the rows."""
    from audit.compliance.data_exports import export_file_delete

    exports = list(ExportRequest.objects.filter(subject=user))
    for export in exports:
        export_file_delete(export=export)
    return ExportRequest.objects.filter(pk__in=[export.pk for export in exports]).delete()[0]


def _erase(user: User) -> dict[str, Any]:
    # First, while the objects it looks up (keys, grants, conversations) are still there.
    console_log_entries_deleted = _console_log_forget(user)
    conversations = Conversation.objects.filter(owner=user)
    evidence: dict[str, Any] = {
        "messages_deleted": Message.objects.filter(conversation__in=conversations).count(),
        "conversations_deleted": conversations.delete()[1].get(Conversation._meta.label, 0),
        "api_keys_deleted": ApiKey.objects.filter(user=user).count(),
        "login_sessions_revoked": sessions_revoke_all(user=user, reason="erased"),
        "console_sessions_ended": _console_sessions_end(user),
        "issued_tokens_forgotten": OutstandingToken.objects.filter(user=user).delete()[0],
        "object_permissions_dropped": UserObjectPermission.objects.filter(user=user).delete()[0],
        "roles_and_teams_removed": sorted(Group.objects.filter(user=user).values_list("name", flat=True)),
        "second_factor_devices_deleted": len(list(devices_for_user(user, confirmed=None))),
        "console_log_entries_deleted": console_log_entries_deleted,
        "exports_deleted": _exports_forget(user),
        "usage_records_kept_pseudonymous": UsageRecord.objects.filter(user_id=user.pk).count(),
    }
    evidence["quota_policies_deleted"] = QuotaPolicy.objects.filter(user=user).delete()[0]
    return evidence


def compliance_erasure_run(*, erasure_id: str) -> None:
    """The worker's part: erase the subject and keep the evidence. Safe to run twice."""
    if compliance_request_claim(model=ErasureRequest, request_id=erasure_id) is None:
        return
    with transaction.atomic():
        # Held to the end: the sweeper skips a locked request, so nobody re-queues it mid-way.
        erasure = ErasureRequest.objects.select_for_update().get(pk=erasure_id)
        if erasure.status != ErasureRequest.Status.RUNNING:
            return
        user = (
            User.objects.select_for_update().filter(pk=erasure.subject_id).first()
            if erasure.subject_id
            else None
        )
        if user is None:
            compliance_request_fail(request=erasure, error="the subject no longer exists")
            return
        evidence = _erase(user)
        requester = erasure.requested_by if erasure.requested_by_id != user.pk else None
        # Recorded before the subject's key goes, so this event's details are blanked with the rest.
        audit_event_record(
            action="compliance.erasure.completed",
            actor=requester,
            actor_kind=None if requester else AuditEvent.ActorKind.SYSTEM,
            actor_display="" if requester else "system",
            target=user,
            metadata={"request": str(erasure.pk), **evidence},
        )
        evidence["audit_rows_blanked"] = audit_subject_erase(user=user)
        user.delete()
        evidence["user_deleted"] = True
        erasure.evidence = evidence
        erasure.status = ErasureRequest.Status.DONE
        erasure.progress = 100
        erasure.finished_at = timezone.now()
        erasure.save(update_fields=["evidence", "status", "progress", "finished_at"])

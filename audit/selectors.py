"""Reads of the audit trail."""

from django.db.models import QuerySet

from audit.models import AuditEvent


def audit_event_list(*, action: str | None = None, request_id: str | None = None) -> QuerySet[AuditEvent]:
    events = AuditEvent.objects.all()
    if action is not None:
        events = events.filter(action=action)
    if request_id is not None:
        events = events.filter(request_id=request_id)
    return events

"""Writes to the audit trail. The only way a row gets into `AuditEvent`."""

from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import models

from audit.context import request_context_current
from audit.models import AuditEvent


def _actor_fields(actor: AbstractBaseUser | None) -> dict[str, Any]:
    if actor is None or not actor.is_authenticated:
        return {"actor": None, "actor_display": "", "actor_kind": AuditEvent.ActorKind.ANONYMOUS}
    return {
        "actor": actor,
        "actor_display": actor.get_username(),
        "actor_kind": AuditEvent.ActorKind.USER,
    }


def audit_event_record(
    *,
    action: str,
    actor: AbstractBaseUser | None = None,
    actor_kind: AuditEvent.ActorKind | None = None,
    actor_display: str = "",
    target: models.Model | None = None,
    target_display: str = "",
    outcome: AuditEvent.Outcome = AuditEvent.Outcome.SUCCESS,
    metadata: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one audit event.

    Call it inside the transaction of the action it records, so the action and its record
    commit or roll back together. Request id, client IP and user agent come from the
    current request context (HTTP middleware or websocket consumer).
    """
    fields = _actor_fields(actor)
    if actor_kind is not None:
        fields["actor_kind"] = actor_kind
    if actor_display:
        fields["actor_display"] = actor_display
    context = request_context_current()
    return AuditEvent.objects.create(
        **fields,
        action=action,
        target_type=target._meta.label_lower if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        target_display=(target_display or (str(target) if target is not None else ""))[:255],
        request_id=context.request_id if context else "",
        client_ip=context.client_ip if context else None,
        user_agent=context.user_agent if context else "",
        outcome=outcome,
        metadata=metadata or {},
    )

"""Writes to the audit trail. The only way a row gets into `AuditEvent`."""

import ipaddress
import uuid
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import connection, models, transaction
from django.utils import timezone

from audit import chain
from audit.context import request_context_current
from audit.models import AuditEvent
from audit.subjects import audit_subject_for

# pg_advisory_xact_lock's key for "the chain's head". Any constant; this one spells "gatehaud".
_CHAIN_LOCK = 0x6761746568617564
_HEAD_QUERY = "SELECT sequence, hash FROM audit_auditevent ORDER BY sequence DESC LIMIT 1"


def _actor_fields(actor: AbstractBaseUser | None) -> dict[str, Any]:
    if actor is None or not actor.is_authenticated:
        return {"actor": None, "actor_display": "", "actor_kind": AuditEvent.ActorKind.ANONYMOUS}
    return {
        "actor": actor,
        "actor_display": actor.get_username(),
        "actor_kind": AuditEvent.ActorKind.USER,
    }


def _ip_canonical(address: str | None) -> str | None:
    # The spelling PostgreSQL's inet and SQLite give back, so digests match on re-reading.
    return ipaddress.ip_address(address).compressed if address else None


def _chain_head() -> tuple[int, str]:
    """The last sequence number and hash, read under the chain's lock.

    PostgreSQL: a transaction-scoped advisory lock, so concurrent appends queue here and each
    reads the head its predecessor committed (a new snapshot per statement under READ
    COMMITTED). SQLite: transactions begin IMMEDIATE (settings), which already serialises
    writers. Either way the unique sequence makes a fork impossible, not merely unlikely.
    """
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Lock, then read, in one round trip: two statements of one simple query, each with
            # its own snapshot, so the read sees what the lock's previous holder committed.
            cursor.execute(f"SELECT pg_advisory_xact_lock({_CHAIN_LOCK}); {_HEAD_QUERY}")
            cursor.nextset()
        else:
            cursor.execute(_HEAD_QUERY)
        row = cursor.fetchone()
    return (int(row[0]), str(row[1])) if row else (0, chain.GENESIS)


def audit_event_record(
    *,
    action: str,
    actor: AbstractBaseUser | None = None,
    actor_kind: AuditEvent.ActorKind | None = None,
    actor_display: str = "",
    target: models.Model | None = None,
    target_type: str = "",
    target_id: str = "",
    target_display: str = "",
    target_subject: AbstractBaseUser | None = None,
    outcome: AuditEvent.Outcome = AuditEvent.Outcome.SUCCESS,
    metadata: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one audit event to the chain.

    Call it inside the transaction of the action it records, so the action and its record
    commit or roll back together. `target_type`/`target_id` name a target that is not at hand
    as an instance (a console log entry's object, say). `target_subject` is the person a
    target that is not itself a user belongs to (an API key's owner): the row then carries
    their pseudonym and their key covers `target_display`, so their erasure blanks it. Request
    id, client IP and user agent come from the current request context (HTTP middleware or
    websocket consumer).
    """
    fields = _actor_fields(actor)
    if actor_kind is not None:
        fields["actor_kind"] = actor_kind
    if actor_display:
        fields["actor_display"] = actor_display
    context = request_context_current()
    user_model = get_user_model()
    actor_subject = audit_subject_for(user=fields["actor"]) if fields["actor"] is not None else None
    subject_user = target if isinstance(target, user_model) else target_subject
    target_subject_row = audit_subject_for(user=subject_user) if subject_user is not None else None
    event = AuditEvent(
        **fields,
        uuid=uuid.uuid4(),
        occurred_at=timezone.now(),
        actor_pseudonym=actor_subject.pseudonym if actor_subject else None,
        action=action,
        target_type=target._meta.label_lower if target is not None else target_type,
        target_id=str(target.pk) if target is not None else target_id,
        target_pseudonym=target_subject_row.pseudonym if target_subject_row else None,
        target_display=(target_display or (str(target) if target is not None else ""))[:255],
        request_id=context.request_id if context else "",
        client_ip=_ip_canonical(context.client_ip) if context else None,
        user_agent=(context.user_agent if context else "")[:512],
        outcome=outcome,
        metadata_json=chain.metadata_canonical(metadata or {}),
    )
    event.actor_digest = chain.personal_digest(
        actor_subject.key if actor_subject else b"", personal_values(event, chain.PERSONAL_ACTOR_FIELDS)
    )
    event.target_digest = chain.personal_digest(
        target_subject_row.key if target_subject_row else b"",
        personal_values(event, chain.PERSONAL_TARGET_FIELDS),
    )
    # No savepoint: inside the caller's transaction this joins it (and its lock is held to
    # its commit); outside one it is its own transaction.
    with transaction.atomic(savepoint=False):
        sequence, previous = _chain_head()
        event.sequence = sequence + 1
        event.hash = chain.link_hash(previous, chain.event_canonical(chained_values(event)))
        event.save(force_insert=True)
    return event


def personal_values(event: AuditEvent, names: tuple[str, ...]) -> list[str]:
    return [str(getattr(event, name) or "") for name in names]


def chained_values(event: AuditEvent) -> list[object]:
    """`event`'s values in `chain.CHAINED_FIELDS` order, spelled as the chain hashes them."""
    return [
        event.sequence,
        str(event.uuid),
        chain.timestamp_canonical(event.occurred_at),
        str(event.actor_pseudonym or ""),
        event.actor_kind,
        event.action,
        event.target_type,
        event.target_id,
        str(event.target_pseudonym or ""),
        event.request_id,
        event.outcome,
        event.actor_digest,
        event.target_digest,
        event.metadata_json,
    ]

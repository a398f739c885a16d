"""Writes to the audit trail. The only way a row gets into `AuditEvent`.

An append takes no lock: the row is inserted unsealed, in the caller's transaction, with a keyed
digest of its contents, and this process's sealer (`audit.sealer`, started here on first use)
links it into the chain moments after it commits (`audit.sealing`).
"""

import operator
import uuid
from collections.abc import Callable
from functools import cache
from typing import Any

import psycopg
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import DEFAULT_DB_ALIAS, connection, connections, models, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from audit import chain
from audit.context import request_context_current
from audit.digests import audit_row_digest
from audit.models import AuditEvent
from audit.sealer import audit_sealer_ensure
from audit.subjects import audit_subject_for


def _actor_fields(actor: AbstractBaseUser | None) -> dict[str, Any]:
    if actor is None or not actor.is_authenticated:
        return {"actor": None, "actor_display": "", "actor_kind": AuditEvent.ActorKind.ANONYMOUS}
    return {
        "actor": actor,
        "actor_display": actor.get_username(),
        "actor_kind": AuditEvent.ActorKind.USER,
    }


def ip_canonical(address: str | None) -> str | None:
    """How a client's address is stored and digested (see `chain.address_canonical`)."""
    return chain.address_canonical(address) if address else None


def _chain_head() -> tuple[int, str]:
    """The sealed head (sequence, hash), after sealing what had committed. Kept for callers
    that seed the chain directly (bench); new code reads `audit.sealing.audit_chain_head`."""
    from audit.sealing import audit_chain_head, audit_seal_pending

    audit_seal_pending()
    return audit_chain_head()


def audit_event_build(
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
    request_context: bool = True,
) -> AuditEvent:
    """The unsaved, unsealed event `audit_event_record` inserts, digests and all (see there).

    `request_context=False` leaves the current request's id, address and agent off it (the
    sealer's own events belong to no request). May create the actor's or target's audit
    subject (`audit.subjects`), in the caller's transaction.
    """
    started = audit_event_start(
        actor=actor,
        actor_kind=actor_kind,
        actor_display=actor_display,
        target=target,
        target_type=target_type,
        target_id=target_id,
        target_display=target_display,
        target_subject=target_subject,
        request_context=request_context,
    )
    return audit_event_finish(started, action=action, outcome=outcome, metadata=metadata)


def audit_event_start(
    *,
    actor: AbstractBaseUser | None = None,
    actor_kind: AuditEvent.ActorKind | None = None,
    actor_display: str = "",
    target: models.Model | None = None,
    target_type: str = "",
    target_id: str = "",
    target_display: str = "",
    target_subject: AbstractBaseUser | None = None,
    request_context: bool = True,
) -> AuditEvent:
    """The first half of `audit_event_build` (same arguments): who acts on what, from where, and
    their personal digests; what happened and when are left to `audit_event_finish`.

    For a record whose subject is known before its outcome (a chat's, while its model answers):
    the work is done while the caller waits anyway, and the end pays only the finish. Not an
    event until finished: it has no action and no row digest.
    """
    fields = _actor_fields(actor)
    if actor_kind is not None:
        fields["actor_kind"] = actor_kind
    if actor_display:
        fields["actor_display"] = actor_display
    context = request_context_current() if request_context else None
    user_model = get_user_model()
    actor_subject = audit_subject_for(user=fields["actor"]) if fields["actor"] is not None else None
    subject_user = target if isinstance(target, user_model) else target_subject
    target_subject_row = audit_subject_for(user=subject_user) if subject_user is not None else None
    event = AuditEvent(
        **fields,
        uuid=uuid.uuid4(),
        actor_pseudonym=actor_subject.pseudonym if actor_subject else None,
        target_type=target._meta.label_lower if target is not None else target_type,
        target_id=str(target.pk) if target is not None else target_id,
        target_pseudonym=target_subject_row.pseudonym if target_subject_row else None,
        target_display=(target_display or (str(target) if target is not None else ""))[:255],
        request_id=context.request_id if context else "",
        client_ip=ip_canonical(context.client_ip) if context else None,
        user_agent=(context.user_agent if context else "")[:512],
    )
    event.actor_digest = chain.personal_digest(
        actor_subject.key if actor_subject else b"", personal_values(event, chain.PERSONAL_ACTOR_FIELDS)
    )
    event.target_digest = chain.personal_digest(
        target_subject_row.key if target_subject_row else b"",
        personal_values(event, chain.PERSONAL_TARGET_FIELDS),
    )
    return event


def audit_event_finish(
    started: AuditEvent,
    *,
    action: str,
    outcome: AuditEvent.Outcome = AuditEvent.Outcome.SUCCESS,
    metadata: dict[str, Any] | None = None,
) -> AuditEvent:
    """Finish `started` (from `audit_event_start`; once) into the event `audit_event_build` would
    give: what happened, its outcome and metadata, the time now, and the digest of it all."""
    if started.action:
        raise ValueError("this audit event is already finished: start another")
    started.action = action
    started.outcome = outcome
    started.occurred_at = timezone.now()
    started.metadata_json = chain.metadata_canonical(metadata or {})
    started.row_digest = audit_row_digest(pending_values(started))
    return started


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
    """Append one audit event to the trail, unsealed: no sequence and no hash until the sealer
    links it into the chain, moments after it commits.

    Call it inside the transaction of the action it records, so the action and its record
    commit or roll back together: a failed insert raises here and the caller's transaction
    (and its action) rolls back. No lock is taken, so audited requests do not queue behind
    each other. `target_type`/`target_id` name a target that is not at hand as an instance (a
    console log entry's object, say). `target_subject` is the person a target that is not
    itself a user belongs to (an API key's owner): the row then carries their pseudonym and
    their key covers `target_display`, so their erasure blanks it. Request id, client IP and
    user agent come from the current request context (HTTP middleware or websocket consumer).
    """
    event = audit_event_build(
        action=action,
        actor=actor,
        actor_kind=actor_kind,
        actor_display=actor_display,
        target=target,
        target_type=target_type,
        target_id=target_id,
        target_display=target_display,
        target_subject=target_subject,
        outcome=outcome,
        metadata=metadata,
    )
    return audit_event_insert(event=event)


def audit_event_insert(*, event: AuditEvent) -> AuditEvent:
    """Append `event`, built by `audit_event_build`, as `audit_event_record` does (see there)."""
    # No savepoint: inside the caller's transaction this joins it; outside one it is its own.
    with transaction.atomic(savepoint=False):
        _event_insert(event)
    audit_sealer_ensure()
    return event


@cache
def insert_fields() -> tuple[models.Field[Any, Any], ...]:
    """The columns an append writes, in order: every concrete field but the id."""
    return tuple(field for field in AuditEvent._meta.concrete_fields if not field.primary_key)


@cache
def insert_statement() -> str:
    """The INSERT of one event's `insert_fields()`, one `%s` placeholder per value."""
    fields = insert_fields()
    columns = ", ".join(connection.ops.quote_name(str(field.column)) for field in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    return f"INSERT INTO {AuditEvent._meta.db_table} ({columns}) VALUES ({placeholders})"  # noqa: S608


@cache
def _insert_statement(vendor: str, returning: bool) -> str:
    # `vendor` keys the cache: the quoting is the connection's.
    return insert_statement() + (" RETURNING id" if returning else "")


def _event_insert(event: AuditEvent) -> None:
    """INSERT `event` with one statement made once per process, as `save(force_insert=True)`
    would but without compiling a query for every event (a third of an append's own time).
    AuditEvent has no save() override and no signal receivers to skip. Raises what the
    database raises (as Django's errors); the caller's transaction then rolls back."""
    # The wrapper itself, not the `connection` proxy: each field's preparation looks it up a
    # few times, and through the proxy every lookup is a thread-local read.
    database = connections[DEFAULT_DB_ALIAS]
    if database.vendor == "postgresql" and not database.queries_logged:
        _event_insert_prepared(database, event)
    else:
        returning = database.features.can_return_columns_from_insert
        values = [
            field.get_db_prep_save(getattr(event, field.attname), database) for field in insert_fields()
        ]
        with database.cursor() as cursor:
            cursor.execute(_insert_statement(database.vendor, returning), values)
            row = cursor.fetchone() if returning else None
            event.pk = row[0] if row else cursor.lastrowid
    event._state.adding, event._state.db = False, database.alias


def _event_insert_prepared(database: BaseDatabaseWrapper, event: AuditEvent) -> None:
    """On PostgreSQL: the INSERT as a server-side prepared statement, in the caller's
    transaction, on Django's own connection; the values as `audit.appender` sends them (what
    `audit_event_build` sets needs no per-field preparation there, see `row_values`).

    Django's cursors bind values into the statement's text, so the server parses and plans
    every append afresh; this one is parsed once per connection. Where Django logs queries
    (DEBUG, a test capturing them) the plain path runs instead, so the log stays whole.
    """
    database.ensure_connection()
    with database.wrap_database_errors, psycopg.Cursor(database.connection) as cursor:
        cursor.execute(
            _insert_statement(database.vendor, True), row_values()(event), prepare=server_side_prepare()
        )
        row = cursor.fetchone()
    event.pk = row[0] if row else None


@cache
def row_values() -> Callable[[AuditEvent], tuple[Any, ...]]:
    """`insert_fields()`'s values of an event, in order, read in one call.

    Django's per-field preparation (`get_db_prep_save`) is skipped: it was a fifth of an
    append's CPU, and on PostgreSQL it gives back the same values for everything
    `audit_event_build` sets (UUIDs, an aware datetime, text, integers, None), but the client
    address, which the statement casts to inet from its text. The sealer checks every row
    against the digest of what was built, so a value stored otherwise would be refused.
    """
    return operator.attrgetter(*(field.attname for field in insert_fields()))


def server_side_prepare() -> bool:
    # A server-side prepared statement, unless a transaction-pooling PgBouncer stands between
    # (the setting that says so; it cannot keep a statement between transactions).
    return not settings.DATABASES["default"].get("DISABLE_SERVER_SIDE_CURSORS", False)


def personal_values(event: AuditEvent, names: tuple[str, ...]) -> list[str]:
    return [str(getattr(event, name) or "") for name in names]


def chained_values(event: AuditEvent) -> list[object]:
    """`event`'s values in `chain.CHAINED_FIELDS` order, spelled as the chain hashes them."""
    return [event.sequence, *pending_values(event)]


def pending_values(event: AuditEvent) -> list[object]:
    """`event`'s values in `chain.PENDING_FIELDS` order (all chained but the sequence), spelled
    as the chain hashes them: what its row digest covers."""
    return [
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

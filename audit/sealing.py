"""Sealing: linking committed, unsealed events into the hash chain, off the request path.

A request inserts its event unsealed (`audit.services.audit_event_record`): no lock, no chain
position, but a keyed digest of its contents (`audit.digests`). `audit_seal_pending` then, in
batches of one transaction each, under the chain's lock:
- reads the chain's head and the committed unsealed rows, oldest insertion (id) first;
- checks each row against its digest;
- gives each good row the next sequence number and its chain hash, exactly as `audit.chain`
  defines them, so verification, exports and `audit/offline_verify.py` see the same chain;
- writes them with one UPDATE, which the append-only triggers allow (sequence and hash going
  from NULL to a value, nothing else changing).

Crash safety: a batch commits whole or not at all. A sealer that dies (or raises) mid-batch
leaves every row of that batch unsealed, and the next run seals them.

Concurrency: PostgreSQL's transaction-scoped advisory lock on the chain's head; the background
sealers only try it (`wait=False`) and leave the work to whoever holds it. On SQLite, whose
transactions begin IMMEDIATE (settings), the write lock already admits one sealer at a time.
Either way the unique sequence makes a fork impossible, not merely unlikely: a second sealer
that got past the lock would fail on it and roll back.

A row that no longer matches its digest was changed after it was written (or written by
someone without the key). It is never sealed. Instead, in the same transaction, the sealer
appends an `audit.event.refused` event naming it (its id and uuid) at the chain position it
would have taken, so the chain itself records that a row was left out and why; it logs an
error and counts `gatehouse_audit_events_refused_total`. The refused row stays in the table,
unsealed, as evidence: verification reports it as tampered every time (the trail stops
verifying), and later seals pass over it.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.db import connection, transaction

from audit import chain
from audit.canonical import pending_columns
from audit.digests import audit_row_digest_matches, audit_row_keys
from audit.models import AuditEvent
from audit.services import audit_event_build, chained_values
from gatehouse.metrics import AUDIT_EVENTS_REFUSED, AUDIT_EVENTS_SEALED

logger = logging.getLogger(__name__)

# pg_advisory_xact_lock's key for "the chain's head". Any constant; this one spells "gatehaud".
CHAIN_LOCK = 0x6761746568617564
# Rows per batch (one transaction) and per UPDATE statement.
SEAL_BATCH = 2000
UPDATE_CHUNK = 1000
REFUSED_ACTION = "audit.event.refused"
REFUSED_TARGET_TYPE = "audit.auditevent"
REFUSED_REASON = "its contents do not match the digest written with it: changed before it was sealed"

_HEAD_QUERY = (
    "SELECT sequence, hash FROM audit_auditevent WHERE sequence IS NOT NULL ORDER BY sequence DESC LIMIT 1"
)


def _pending_query(vendor: str) -> str:
    """Unsealed rows, oldest first, but those a sealed refusal already names."""
    return f"""
        SELECT id, row_digest, hash, {pending_columns(vendor)}
        FROM audit_auditevent AS pending
        WHERE sequence IS NULL AND NOT EXISTS (
            SELECT 1 FROM audit_auditevent AS refusal
            WHERE refusal.target_type = '{REFUSED_TARGET_TYPE}'
              AND refusal.target_id = CAST(pending.id AS TEXT)
              AND refusal.action = '{REFUSED_ACTION}' AND refusal.sequence IS NOT NULL
        )
        ORDER BY id LIMIT %s
    """  # noqa: S608 - constants only; the limit is a parameter


@dataclass
class SealOutcome:
    """What one `audit_seal_pending` call did."""

    sealed: int = 0
    refused: list[int] = field(default_factory=list)  # ids of the rows refused as tampered
    batches: int = 0
    head_sequence: int = 0
    # True when another sealer held the chain's lock and this one (wait=False) left it the work.
    busy: bool = False


def audit_chain_head() -> tuple[int, str]:
    """The sealed head: the last sequence number and its hash, or (0, GENESIS) for no chain."""
    with connection.cursor() as cursor:
        cursor.execute(_HEAD_QUERY)
        row = cursor.fetchone()
    return (int(row[0]), str(row[1])) if row else (0, chain.GENESIS)


def audit_pending_exists() -> bool:
    """Whether any row waits to be sealed: one index probe, no lock. The background sealer asks
    this before it opens a transaction."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM audit_auditevent WHERE sequence IS NULL LIMIT 1")
        return cursor.fetchone() is not None


def _chain_lock(*, wait: bool) -> bool:
    """Take the chain's lock for the current transaction; False if `wait` is off and it is held."""
    if connection.vendor != "postgresql":
        return True  # SQLite: this transaction began IMMEDIATE and holds the database's write lock
    with connection.cursor() as cursor:
        if wait:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CHAIN_LOCK])
            return True
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [CHAIN_LOCK])
        row = cursor.fetchone()
    return bool(row and row[0])


class SealConflict(RuntimeError):
    """A row to seal was sealed by someone else meanwhile: the batch is rolled back."""


def seal_statement_postgresql(count: int) -> str:
    """The one UPDATE that seals `count` rows on PostgreSQL; parameters (id, sequence, hash)
    for each. Only rows still unsealed match."""
    values = ", ".join(["(%s::bigint, %s::bigint, %s::varchar)"] * count)
    return (
        "UPDATE audit_auditevent AS event SET sequence = link.sequence, hash = link.hash "  # noqa: S608
        f"FROM (VALUES {values}) AS link (id, sequence, hash) "
        "WHERE event.id = link.id AND event.sequence IS NULL"
    )


def _chunk_seal(chunk: Sequence[tuple[int, int, str]]) -> int:
    """Write one chunk of (id, sequence, hash); how many rows it sealed."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(seal_statement_postgresql(len(chunk)), [value for link in chunk for value in link])
        else:
            cursor.executemany(
                "UPDATE audit_auditevent SET sequence = %s, hash = %s WHERE id = %s AND sequence IS NULL",
                [(sequence, digest, event_id) for event_id, sequence, digest in chunk],
            )
        return int(cursor.rowcount)


def rows_seal(links: Sequence[tuple[int, int, str]]) -> None:
    """Write (id, sequence, hash) for each row, in one statement per `UPDATE_CHUNK` rows.

    Only rows still unsealed are touched; if any was not, raises SealConflict, and the caller's
    transaction (the batch) rolls back, the chunks already written with it.
    """
    for start in range(0, len(links), UPDATE_CHUNK):
        chunk = links[start : start + UPDATE_CHUNK]
        updated = _chunk_seal(chunk)
        if updated != len(chunk):
            raise SealConflict(f"{len(chunk) - updated} of {len(chunk)} rows were no longer unsealed")


def _refusal_append(*, event_id: int, uuid: str, sequence: int, previous: str) -> str:
    """Append, sealed at `sequence`, the event that records row `event_id`'s refusal; its hash."""
    refusal = audit_event_build(
        action=REFUSED_ACTION,
        actor_kind=AuditEvent.ActorKind.SYSTEM,
        actor_display="audit sealer",
        target_type=REFUSED_TARGET_TYPE,
        target_id=str(event_id),
        outcome=AuditEvent.Outcome.DENIED,
        metadata={"event_id": event_id, "uuid": uuid, "reason": REFUSED_REASON},
        request_context=False,
    )
    refusal.sequence = sequence
    refusal.hash = chain.link_hash(previous, chain.event_canonical(chained_values(refusal)))
    refusal.save(force_insert=True)
    logger.error(
        "audit: event id %s (uuid %s) was refused by the sealer: %s; recorded as event %s",
        event_id,
        uuid,
        REFUSED_REASON,
        sequence,
    )
    return refusal.hash


def _batch_seal(*, batch_size: int, outcome: SealOutcome) -> int:
    """Seal one batch in the current transaction (the chain's lock held); rows read."""
    sequence, previous = audit_chain_head()
    with connection.cursor() as cursor:
        cursor.execute(_pending_query(connection.vendor), [batch_size])
        rows = cursor.fetchall()
    keys = audit_row_keys()
    link_hash, canonical = chain.link_hash, chain.event_canonical
    links: list[tuple[int, int, str]] = []
    for row in rows:
        event_id, digest, stored_hash, values = int(row[0]), str(row[1] or ""), row[2], list(row[3:])
        sequence += 1
        if stored_hash is None and audit_row_digest_matches(values, digest, keys=keys):
            previous = link_hash(previous, canonical([sequence, *values]))
            links.append((event_id, sequence, previous))
        else:
            previous = _refusal_append(
                event_id=event_id, uuid=str(values[0]), sequence=sequence, previous=previous
            )
            outcome.refused.append(event_id)
    rows_seal(links)
    outcome.sealed += len(links)
    outcome.head_sequence = sequence
    return len(rows)


def audit_seal_pending(
    *, wait: bool = True, batch_size: int = SEAL_BATCH, max_batches: int | None = None
) -> SealOutcome:
    """Seal every unsealed row that has committed, in insertion order, batch by batch.

    `wait=True` (tests, checkpoints, commands) queues for the chain's lock, so that on return
    every row committed before the call is sealed (or refused); `wait=False` (the background
    sealers) returns at once with `busy` set if another sealer holds it (and `head_sequence`
    unknown: 0). With nothing to seal, a call is one transaction all the same. Each batch is
    its own transaction (a savepoint inside a caller's): an error in one rolls back that batch
    whole and propagates; batches already committed stay sealed. Rows still uncommitted when a batch
    reads are left for the next call.
    """
    outcome = SealOutcome()
    while max_batches is None or outcome.batches < max_batches:
        before_sealed, before_refused = outcome.sealed, len(outcome.refused)
        with transaction.atomic():
            if not _chain_lock(wait=wait):
                outcome.busy = True
                break
            read = _batch_seal(batch_size=batch_size, outcome=outcome)
        outcome.batches += 1
        AUDIT_EVENTS_SEALED.inc(outcome.sealed - before_sealed)
        AUDIT_EVENTS_REFUSED.inc(len(outcome.refused) - before_refused)
        if read < batch_size:
            break
    if not outcome.batches and not outcome.busy:
        outcome.head_sequence = audit_chain_head()[0]
    return outcome

"""Checking the trail: every link, every checkpoint, every unsealed row, every person's details.

Four questions, answered in one pass over the sealed events in sequence order and one over the
rows not yet sealed:
- the chain: does each stored hash match its event and its predecessor, with no gaps?
- the checkpoints: does the trail still hold, at each sealed position, the hash that was
  signed there, and does it reach that far?
- the rows waiting to be sealed: how many, since when, and does each still match the digest
  it was written with? (One that does not was changed before the sealer reached it; the sealer
  refuses it and records so in the chain, and it is reported here every time.) Rows merely
  waiting are no problem: they are reported, separately, and the trail still verifies.
- personal details: do the names and addresses match the digests chained for them, and have
  erased people's details stayed blank?

`audit_chain_verify` does not seal and records nothing; `audit_verify_run`, which `manage.py
audit_verify`, beat's daily `audit-verify` and the auditor API's verify view call, seals what is
pending first (the command unless given --no-seal) and records the run (`VerificationRun`), which
`/metrics` reads for the alerts.
"""

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from audit import chain
from audit.canonical import chained_columns, pending_columns, personal_columns
from audit.checkpoints import (
    Checkpoint,
    checkpoints_read,
    key_id,
    signature_valid,
    signing_key,
    verification_keys,
)
from audit.digests import audit_row_digest_matches, audit_row_keys
from audit.models import VerificationRun
from audit.sealing import REFUSED_ACTION, REFUSED_TARGET_TYPE, audit_seal_pending
from audit.subjects import audit_subject_keys

logger = logging.getLogger(__name__)

_PAGE = 5000
# Personal-detail problems are listed up to this many; the count is always complete.
_PERSONAL_LISTED = 20

_CHAINED = len(chain.CHAINED_FIELDS)


@dataclass
class Problem:
    sequence: int  # 0 for a row not sealed yet: `event_id` names it
    reason: str
    event_id: int | None = None


@dataclass
class VerificationReport:
    ok: bool = True
    events: int = 0
    head_sequence: int = 0
    head_hash: str = chain.GENESIS
    first_break: Problem | None = None
    checkpoints_checked: int = 0
    checkpoint_problems: list[Problem] = field(default_factory=list)
    personal_problem_count: int = 0
    personal_problems: list[Problem] = field(default_factory=list)
    # Rows written but not sealed yet: how many, and how long the oldest has waited. Not a
    # problem by themselves (the sealer is a moment behind); tampered ones are listed below.
    pending_events: int = 0
    pending_oldest_seconds: float | None = None
    # Unsealed rows that no longer match the digest written with them (the sealer refuses these).
    tampered_pending_count: int = 0
    tampered_pending: list[Problem] = field(default_factory=list)
    public_key_id: str = ""
    seconds: float = 0.0

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"events_per_second": round(self.events_per_second)}


# Read with plain SQL, each value already spelled as the chain hashes it where the database
# can do that: building model instances or even Django's typed tuples costs more per row than
# hashing does, and verification must run at 100k events/s (SPEC §8 P6).
def _sealed_query(vendor: str) -> str:
    return (
        f"SELECT {chained_columns(vendor)}, hash, {personal_columns(vendor)} "  # noqa: S608 - no input in it
        "FROM audit_auditevent WHERE sequence IS NOT NULL ORDER BY sequence"
    )


def _pending_query(vendor: str) -> str:
    """Unsealed rows, oldest first: id, occurred_at, digest, stored hash, then as `_sealed_query`
    but with no sequence (the chained fields but it, a NULL hash, the personal details)."""
    return (
        f"SELECT id, occurred_at, row_digest, hash, {pending_columns(vendor)}, "  # noqa: S608 - no input in it
        f"{personal_columns(vendor)} FROM audit_auditevent WHERE sequence IS NULL ORDER BY id"
    )


def _rows() -> Iterator[tuple[Any, ...]]:
    """Every sealed event in sequence order, spelled for hashing: one query, streamed.

    On PostgreSQL a server-side cursor inside one read-only transaction: the walk sees one
    snapshot and memory stays flat. On SQLite a plain cursor in autocommit (a transaction there
    would take the write lock for the whole walk); a statement reads one snapshot anyway.
    """
    postgresql = connection.vendor == "postgresql"
    with transaction.atomic() if postgresql else nullcontext():
        cursor = connection.chunked_cursor()
        try:
            cursor.execute(_sealed_query(connection.vendor))
            while page := cursor.fetchmany(_PAGE):
                yield from page
        finally:
            cursor.close()


class _PersonalCheck:
    def __init__(self, report: VerificationReport) -> None:
        self.report = report
        self.keys = audit_subject_keys()

    def _problem(self, sequence: int, reason: str, event_id: int | None) -> None:
        self.report.personal_problem_count += 1
        if len(self.report.personal_problems) < _PERSONAL_LISTED:
            self.report.personal_problems.append(Problem(sequence, reason, event_id))

    def _one(
        self, sequence: int, pseudonym: str, digest: str, values: list[str], *, who: str, event_id: int | None
    ) -> None:
        key = self.keys.get(pseudonym, b"") if pseudonym else b""
        if key is None:
            if any(values):
                self._problem(
                    sequence, f"the {who}'s details were erased but the row shows some again", event_id
                )
        elif chain.personal_digest(key, values) != digest:
            self._problem(
                sequence, f"the {who}'s recorded details (name, address or agent) were altered", event_id
            )

    def check(self, row: Sequence[Any], event_id: int | None = None) -> None:
        """`row` as `_rows` reads it: the chained fields, the hash, then the personal ones. An
        unsealed row has sequence 0 and is named by `event_id`."""
        personal = ["" if value is None else str(value) for value in row[_CHAINED + 1 :]]
        if personal[1]:  # the client's address, as the database spells it
            personal[1] = chain.address_canonical(personal[1])
        sequence = int(row[0])
        self._one(sequence, str(row[3]), str(row[11]), personal[:3], who="actor", event_id=event_id)
        self._one(sequence, str(row[8]), str(row[12]), personal[3:], who="target", event_id=event_id)


def _refusals() -> dict[str, int]:
    """Row id (as text) -> the sequence of the sealed event that records its refusal."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT target_id, sequence FROM audit_auditevent "
            "WHERE action = %s AND target_type = %s AND sequence IS NOT NULL",
            [REFUSED_ACTION, REFUSED_TARGET_TYPE],
        )
        return {str(target_id): int(sequence) for target_id, sequence in cursor.fetchall()}


def _aware(moment: datetime | str) -> datetime:
    """SQLite hands back naive UTC (or text, where no converter applied)."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment, timezone=UTC)


def _pending_check(report: VerificationReport, personal_check: _PersonalCheck | None) -> None:
    """Count the unsealed rows and check each against its digest (and personal digests)."""
    keys, refused, now = audit_row_keys(), _refusals(), timezone.now()
    pending = len(chain.PENDING_FIELDS)
    oldest: datetime | None = None
    with connection.cursor() as cursor:
        cursor.execute(_pending_query(connection.vendor))
        while page := cursor.fetchmany(_PAGE):
            for row in page:
                event_id, occurred_at, digest, stored_hash = int(row[0]), _aware(row[1]), row[2], row[3]
                values = list(row[4 : 4 + pending])
                report.pending_events += 1
                oldest = occurred_at if oldest is None else min(oldest, occurred_at)
                if personal_check is not None:
                    personal_check.check([0, *values, None, *row[4 + pending :]], event_id)
                if stored_hash is None and audit_row_digest_matches(values, str(digest or ""), keys=keys):
                    continue
                report.tampered_pending_count += 1
                if len(report.tampered_pending) < _PERSONAL_LISTED:
                    refusal = refused.get(str(event_id))
                    report.tampered_pending.append(
                        Problem(
                            0,
                            f"unsealed event id {event_id} (uuid {values[0]}) was changed before it was "
                            "sealed: it no longer matches the digest written with it"
                            + (f"; the sealer refused it (event {refusal})" if refusal else ""),
                            event_id,
                        )
                    )
    if oldest is not None:
        report.pending_oldest_seconds = round(max(0.0, (now - oldest).total_seconds()), 3)


def _checkpoints_compare(report: VerificationReport, sealed: dict[int, str], found: list[Checkpoint]) -> None:
    report.public_key_id = key_id(signing_key().public_key())
    keys = verification_keys()
    for checkpoint in found:
        report.checkpoints_checked += 1
        public_key = keys.get(checkpoint.key_id)
        if checkpoint.sequence < 1:
            report.checkpoint_problems.append(Problem(0, f"{checkpoint.file} cannot be read"))
        elif public_key is None:
            report.checkpoint_problems.append(
                Problem(
                    checkpoint.sequence,
                    f"{checkpoint.file} names key {checkpoint.key_id}, which is neither the signing key "
                    "nor one of GATEHOUSE_AUDIT_RETIRED_PUBLIC_KEYS",
                )
            )
        elif not signature_valid(
            data=checkpoint.signed_bytes(), signature=checkpoint.signature, public_key=public_key
        ):
            report.checkpoint_problems.append(
                Problem(
                    checkpoint.sequence, f"{checkpoint.file}: the signature does not verify with this key"
                )
            )
        elif checkpoint.sequence > report.head_sequence:
            report.checkpoint_problems.append(
                Problem(
                    checkpoint.sequence,
                    f"the trail ends at event {report.head_sequence} but {checkpoint.file} sealed event "
                    f"{checkpoint.sequence}: events were removed from the end",
                )
            )
        elif sealed.get(checkpoint.sequence) != checkpoint.hash:
            report.checkpoint_problems.append(
                Problem(
                    checkpoint.sequence,
                    f"event {checkpoint.sequence} no longer has the hash sealed in {checkpoint.file} "
                    f"at {checkpoint.written_at}: the chain was rewritten",
                )
            )


def audit_chain_verify(*, personal: bool = True) -> VerificationReport:
    """Walk the whole trail; the report names the first broken link, every bad checkpoint and
    every unsealed row that was tampered with, and counts the rows still waiting to be sealed.
    `ok` is False on any problem; rows merely waiting are not one."""
    started = time.perf_counter()
    report = VerificationReport()
    found = checkpoints_read()
    wanted = {checkpoint.sequence for checkpoint in found}
    sealed: dict[int, str] = {}
    personal_check = _PersonalCheck(report) if personal else None
    # The unsealed rows first: one sealed meanwhile is then walked below too, never missed.
    _pending_check(report, personal_check)
    # The hot loop: locals only, since it runs once per event of the whole trail.
    link_hash, canonical, chained = chain.link_hash, chain.event_canonical, _CHAINED
    previous, expected, events, first_break = chain.GENESIS, 1, 0, None
    for row in _rows():
        events += 1
        sequence, stored = row[0], row[chained]
        if sequence in wanted:
            sealed[sequence] = stored
        if personal_check is not None:
            personal_check.check(row)
        if first_break is None:
            if sequence != expected:
                first_break = Problem(
                    expected,
                    f"event {expected} is missing: the trail jumps from {expected - 1} to {sequence}",
                )
            elif link_hash(previous, canonical(row[:chained])) != stored:
                first_break = Problem(
                    sequence,
                    f"event {sequence}'s hash does not match its contents and its predecessor's hash",
                )
        previous, expected = stored, sequence + 1
    report.events, report.first_break = events, first_break
    if events:
        report.head_sequence, report.head_hash = expected - 1, previous
    _checkpoints_compare(report, sealed, found)
    report.ok = (
        report.first_break is None
        and not report.checkpoint_problems
        and not report.personal_problem_count
        and not report.tampered_pending_count
    )
    report.seconds = round(time.perf_counter() - started, 4)
    return report


def _first_problem(report: VerificationReport) -> str:
    problems = [
        report.first_break,
        *report.checkpoint_problems,
        *report.tampered_pending,
        *report.personal_problems,
    ]
    found = next((problem for problem in problems if problem is not None), None)
    return found.reason if found else ""


def _run_record(
    *,
    started_at: datetime,
    source: VerificationRun.Source,
    personal: bool,
    result: VerificationRun.Result,
    report: VerificationReport | None = None,
    detail: str = "",
) -> None:
    """Keep the run for /metrics. A database that refuses the row (a read-only role, or the
    database being what failed) loses the record, not the verification: it is logged."""
    try:
        with transaction.atomic():  # a savepoint inside a caller's transaction
            VerificationRun.objects.create(
                started_at=started_at,
                finished_at=timezone.now(),
                result=result,
                source=source,
                personal=personal,
                events=report.events if report else 0,
                head_sequence=report.head_sequence if report else 0,
                seconds=report.seconds if report else 0.0,
                detail=detail[:2000],
            )
    except DatabaseError:
        logger.warning("could not record an audit verification run (%s)", result, exc_info=True)


def audit_verify_run(
    *, source: VerificationRun.Source, personal: bool = True, seal: bool = True
) -> VerificationReport:
    """Seal what is pending (unless `seal` is False), verify the whole trail, and record the run
    as passed or failed. A run that raises is recorded as an error (the trail was not checked)
    and the exception propagates."""
    started_at = timezone.now()
    try:
        if seal:
            audit_seal_pending()
        report = audit_chain_verify(personal=personal)
    except Exception as error:
        _run_record(
            started_at=started_at,
            source=source,
            personal=personal,
            result=VerificationRun.Result.ERROR,
            detail=f"{type(error).__name__}: {error}",
        )
        raise
    _run_record(
        started_at=started_at,
        source=source,
        personal=personal,
        result=VerificationRun.Result.PASSED if report.ok else VerificationRun.Result.FAILED,
        report=report,
        detail=_first_problem(report),
    )
    return report

"""Checking the trail: every link, every checkpoint, and every person's details.

Three questions, answered in one pass over the events in sequence order:
- the chain: does each stored hash match its event and its predecessor, with no gaps?
- the checkpoints: does the trail still hold, at each sealed position, the hash that was
  signed there, and does it reach that far?
- personal details: do the names and addresses match the digests chained for them, and have
  erased people's details stayed blank?
"""

import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any

from django.db import connection, transaction

from audit import chain
from audit.checkpoints import (
    Checkpoint,
    checkpoints_read,
    key_id,
    signature_valid,
    signing_key,
    verification_keys,
)
from audit.subjects import audit_subject_keys

_PAGE = 5000
# Personal-detail problems are listed up to this many; the count is always complete.
_PERSONAL_LISTED = 20

_CHAINED = len(chain.CHAINED_FIELDS)


@dataclass
class Problem:
    sequence: int
    reason: str


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
_SELECT_POSTGRESQL = """
    SELECT sequence, uuid::text,
           to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
           COALESCE(actor_pseudonym::text, ''), actor_kind, action, target_type, target_id,
           COALESCE(target_pseudonym::text, ''), request_id, outcome, actor_digest, target_digest,
           metadata_json, hash, actor_display, COALESCE(host(client_ip), ''), user_agent, target_display
    FROM audit_auditevent ORDER BY sequence
"""


def _sqlite_dashed(column: str) -> str:
    """SQLite keeps UUIDs as 32 hex digits; the chain spells them with dashes."""
    parts = "||'-'||".join(f"substr({column}, {start}, {length})" for start, length in _UUID_GROUPS)
    return f"CASE WHEN {column} IS NULL THEN '' ELSE {parts} END"


_UUID_GROUPS = ((1, 8), (9, 4), (13, 4), (17, 4), (21, 12))
# Stored as naive UTC "YYYY-MM-DD HH:MM:SS[.ffffff]", with no fraction when it is zero.
_SELECT_SQLITE = f"""
    SELECT sequence, {_sqlite_dashed("uuid")},
           replace(occurred_at, ' ', 'T') || CASE WHEN length(occurred_at) = 19 THEN '.000000Z' ELSE 'Z' END,
           {_sqlite_dashed("actor_pseudonym")}, actor_kind, action, target_type, target_id,
           {_sqlite_dashed("target_pseudonym")}, request_id, outcome, actor_digest, target_digest,
           metadata_json, hash, actor_display, COALESCE(client_ip, ''), user_agent, target_display
    FROM audit_auditevent ORDER BY sequence
"""  # noqa: S608 - no input in it


def _rows() -> Iterator[tuple[Any, ...]]:
    """Every event in sequence order, spelled for hashing: one query, streamed.

    On PostgreSQL a server-side cursor inside one read-only transaction: the walk sees one
    snapshot and memory stays flat. On SQLite a plain cursor in autocommit (a transaction there
    would take the write lock for the whole walk); a statement reads one snapshot anyway.
    """
    postgresql = connection.vendor == "postgresql"
    with transaction.atomic() if postgresql else nullcontext():
        cursor = connection.chunked_cursor()
        try:
            cursor.execute(_SELECT_POSTGRESQL if postgresql else _SELECT_SQLITE)
            while page := cursor.fetchmany(_PAGE):
                yield from page
        finally:
            cursor.close()


class _PersonalCheck:
    def __init__(self, report: VerificationReport) -> None:
        self.report = report
        self.keys = audit_subject_keys()

    def _problem(self, sequence: int, reason: str) -> None:
        self.report.personal_problem_count += 1
        if len(self.report.personal_problems) < _PERSONAL_LISTED:
            self.report.personal_problems.append(Problem(sequence, reason))

    def _one(self, sequence: int, pseudonym: str, digest: str, values: list[str], who: str) -> None:
        key = self.keys.get(pseudonym, b"") if pseudonym else b""
        if key is None:
            if any(values):
                self._problem(sequence, f"the {who}'s details were erased but the row shows some again")
        elif chain.personal_digest(key, values) != digest:
            self._problem(sequence, f"the {who}'s recorded details (name, address or agent) were altered")

    def check(self, row: tuple[Any, ...]) -> None:
        """`row` as `_rows` reads it: the chained fields, the hash, then the personal ones."""
        personal = ["" if value is None else str(value) for value in row[_CHAINED + 1 :]]
        sequence = int(row[0])
        self._one(sequence, str(row[3]), str(row[11]), personal[:3], "actor")
        self._one(sequence, str(row[8]), str(row[12]), personal[3:], "target")


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
    """Walk the whole trail; the report names the first broken link and every bad checkpoint."""
    started = time.perf_counter()
    report = VerificationReport()
    found = checkpoints_read()
    wanted = {checkpoint.sequence for checkpoint in found}
    sealed: dict[int, str] = {}
    personal_check = _PersonalCheck(report) if personal else None
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
        report.first_break is None and not report.checkpoint_problems and not report.personal_problem_count
    )
    report.seconds = round(time.perf_counter() - started, 4)
    return report

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
from dataclasses import asdict, dataclass, field
from typing import Any

from audit import chain
from audit.checkpoints import Checkpoint, checkpoints_read, key_id, signature_valid, signing_key
from audit.models import AuditEvent
from audit.subjects import audit_subject_keys

_PAGE = 5000
# Personal-detail problems are listed up to this many; the count is always complete.
_PERSONAL_LISTED = 20

_COLUMNS = (
    *chain.CHAINED_FIELDS,
    "hash",
    *chain.PERSONAL_ACTOR_FIELDS,
    *chain.PERSONAL_TARGET_FIELDS,
)
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


def _rows() -> Iterator[tuple[Any, ...]]:
    """Events in sequence order, a page at a time (keyset, so memory stays flat)."""
    after = 0
    while True:
        page = list(
            AuditEvent.objects.filter(sequence__gt=after).order_by("sequence").values_list(*_COLUMNS)[:_PAGE]
        )
        yield from page
        if len(page) < _PAGE:
            return
        after = page[-1][0]


def _canonical(row: tuple[Any, ...]) -> list[object]:
    values = list(row[:_CHAINED])
    values[1] = str(values[1])
    values[2] = chain.timestamp_canonical(values[2])
    values[3] = str(values[3] or "")
    values[8] = str(values[8] or "")
    return values


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

    def check(self, values: list[object], row: tuple[Any, ...]) -> None:
        personal = ["" if value is None else str(value) for value in row[_CHAINED + 1 :]]
        sequence = int(str(values[0]))
        self._one(sequence, str(values[3]), str(values[11]), personal[:3], "actor")
        self._one(sequence, str(values[8]), str(values[12]), personal[3:], "target")


def _checkpoints_compare(report: VerificationReport, sealed: dict[int, str], found: list[Checkpoint]) -> None:
    public_key = signing_key().public_key()
    report.public_key_id = key_id(public_key)
    for checkpoint in found:
        report.checkpoints_checked += 1
        if checkpoint.sequence < 1:
            report.checkpoint_problems.append(Problem(0, f"{checkpoint.file} cannot be read"))
        elif checkpoint.key_id != report.public_key_id or not signature_valid(
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
    previous, expected = chain.GENESIS, 1
    for row in _rows():
        values = _canonical(row)
        sequence, stored = int(str(values[0])), str(row[_CHAINED])
        report.events += 1
        report.head_sequence, report.head_hash = sequence, stored
        if sequence in wanted:
            sealed[sequence] = stored
        if personal_check is not None:
            personal_check.check(values, row)
        if report.first_break is not None:
            continue
        if sequence != expected:
            report.first_break = Problem(
                expected, f"event {expected} is missing: the trail jumps from {expected - 1} to {sequence}"
            )
        elif chain.link_hash(previous, chain.event_canonical(values)) != stored:
            report.first_break = Problem(
                sequence, f"event {sequence}'s hash does not match its contents and its predecessor's hash"
            )
        previous, expected = stored, sequence + 1
    _checkpoints_compare(report, sealed, found)
    report.ok = (
        report.first_break is None and not report.checkpoint_problems and not report.personal_problem_count
    )
    report.seconds = round(time.perf_counter() - started, 4)
    return report

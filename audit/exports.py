"""Signed exports of a stretch of the chain, checkable by someone outside the platform.

An export is a zip of three files:
- `events.jsonl` or `events.csv`: every event of the stretch, oldest first, with its chained
  fields spelled exactly as hashed, its hash, and its personal details (blank once erased);
- `manifest.json`: the stretch (first and last sequence, the hash before the first and the
  last hash), the events file's SHA-256 and the signing key's id;
- `manifest.sig`: an Ed25519 signature of `manifest.json`, base64 (the detached signature).
`python -m audit.offline_verify export.zip --public-key key.pem` checks all of it without
Django or a database.

A CSV is opened in spreadsheets, and its cells hold what anyone typed (a username at a failed
login, a user agent, a key's name). Every cell that starts with `=`, `+`, `-`, `@`, a tab or
a carriage return, or with a single quote, is written with a single quote `'` in front (OWASP's
advice against CSV injection), and every cell is quoted. The quote before a quote makes the
rule reversible: the verifier strips one leading quote from any cell that has one (see
`audit.offline_verify`), and the manifest says the file was written so (`csv_cells`).
"""

import csv
import hashlib
import io
import json
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from django.utils import timezone

from audit import chain
from audit.checkpoints import key_id, public_key_raw, sign, signing_key
from audit.models import AuditEvent
from audit.offline_verify import CSV_CELLS_ESCAPED, CSV_ESCAPE_MARK, CSV_FORMULA_STARTS
from audit.services import chained_values, personal_values

FORMATS = ("jsonl", "csv")
COLUMNS = (*chain.CHAINED_FIELDS, "hash", *chain.PERSONAL_ACTOR_FIELDS, *chain.PERSONAL_TARGET_FIELDS)
# One export holds at most this many events (about 100 MB of JSONL); ask for several ranges.
MAX_EVENTS = 200_000
# An export is built in a temporary file; past this it spills from memory to disk.
_IN_MEMORY_BYTES = 16 * 1024 * 1024


class ExportRangeError(ValueError):
    """The asked-for stretch is empty or lies outside the trail."""


@dataclass(frozen=True)
class AuditExport:
    file: IO[bytes]
    filename: str
    sequence_from: int
    sequence_to: int


def event_export_record(event: AuditEvent) -> dict[str, Any]:
    """One event as exports write it: chained fields spelled as hashed, the hash, personal details."""
    personal = personal_values(event, chain.PERSONAL_ACTOR_FIELDS + chain.PERSONAL_TARGET_FIELDS)
    return dict(zip(COLUMNS, [*chained_values(event), event.hash, *personal], strict=True))


def csv_cell_escape(value: str) -> str:
    """`value` as a CSV cell no spreadsheet runs as a formula; `offline_verify` undoes it."""
    return CSV_ESCAPE_MARK + value if value.startswith((*CSV_FORMULA_STARTS, CSV_ESCAPE_MARK)) else value


def _csv_cells(record: dict[str, Any]) -> dict[str, str]:
    return {name: csv_cell_escape("" if value is None else str(value)) for name, value in record.items()}


def _events_file(records: Iterator[dict[str, Any]], export_format: str) -> tuple[bytes, int, str]:
    buffer = io.StringIO()
    count, last_hash = 0, ""
    if export_format == "csv":
        writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n", quoting=csv.QUOTE_ALL)
        writer.writeheader()
    for record in records:
        if export_format == "csv":
            writer.writerow(_csv_cells(record))
        else:
            buffer.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
        count, last_hash = count + 1, str(record["hash"])
    return buffer.getvalue().encode(), count, last_hash


def audit_export_build(*, sequence_from: int, sequence_to: int, export_format: str) -> AuditExport:
    """Build the signed zip for events `sequence_from`..`sequence_to` (inclusive)."""
    if export_format not in FORMATS:
        raise ExportRangeError(f"format must be one of {', '.join(FORMATS)}")
    if sequence_from < 1 or sequence_to < sequence_from:
        raise ExportRangeError("the range must run from a sequence number of 1 or more to one no smaller")
    if sequence_to - sequence_from + 1 > MAX_EVENTS:
        raise ExportRangeError(f"one export holds at most {MAX_EVENTS} events: ask for several ranges")
    events = AuditEvent.objects.filter(sequence__gte=sequence_from, sequence__lte=sequence_to).order_by(
        "sequence"
    )
    body, count, last_hash = _events_file(
        map(event_export_record, events.iterator(chunk_size=2000)), export_format
    )
    if count == 0:
        raise ExportRangeError(f"the trail holds no events between {sequence_from} and {sequence_to}")
    previous = (
        AuditEvent.objects.filter(sequence=sequence_from - 1).values_list("hash", flat=True).first()
        or chain.GENESIS
    )
    key = signing_key().public_key()
    events_name = f"events.{export_format}"
    manifest = json.dumps(
        {
            "format": export_format,
            "events_file": events_name,
            "events_sha256": hashlib.sha256(body).hexdigest(),
            "events": count,
            "sequence_from": sequence_from,
            "sequence_to": sequence_from + count - 1,
            "previous_hash": previous,
            "last_hash": last_hash,
            "chained_fields": list(chain.CHAINED_FIELDS),
            **({"csv_cells": CSV_CELLS_ESCAPED} if export_format == "csv" else {}),
            "created_at": timezone.now().isoformat(),
            "key_id": key_id(key),
            "public_key": public_key_raw(key).hex(),
        },
        indent=2,
    ).encode()
    spool = tempfile.SpooledTemporaryFile(max_size=_IN_MEMORY_BYTES)  # noqa: SIM115 - returned open
    with zipfile.ZipFile(spool, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(events_name, body)
        archive.writestr("manifest.json", manifest)
        archive.writestr("manifest.sig", sign(manifest) + "\n")
    spool.seek(0)
    last = sequence_from + count - 1
    return AuditExport(
        file=spool,
        filename=f"gatehouse-audit-{sequence_from}-{last}.zip",
        sequence_from=sequence_from,
        sequence_to=last,
    )

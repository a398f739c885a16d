"""Check a Gatehouse audit export with no Gatehouse, Django or database: only this file,
`audit/chain.py` and the `cryptography` package.

    python -m audit.offline_verify gatehouse-audit-1-500.zip --public-key audit-public.pem

It checks that the manifest is signed by the given key, that the events file is the one the
manifest names, and that every event's hash follows from its fields and its predecessor's,
from the manifest's previous hash to its last. Exit status 0 means all of it holds.

CSV cells are escaped against formula injection (OWASP, "CSV Injection"): a spreadsheet runs
a cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return as a formula, so the
exporter writes every such cell with a single quote `'` in front, and every cell that already
starts with a quote with one more, so that the rule can be undone exactly: a cell that starts
with `'` had one quote added, which this verifier removes before hashing; no other cell was
changed. A cell that starts with a formula character was not written by the exporter. Exports
whose manifest names no `csv_cells` escaping predate the rule and are read as they stand.
"""

import argparse
import base64
import csv
import hashlib
import io
import json
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

try:
    from audit import chain
except ImportError:  # run as a lone file next to chain.py
    import chain  # type: ignore[no-redef,import-not-found]


class ExportInvalid(Exception):
    pass


# What a spreadsheet reads as the start of a formula, and the mark that makes a cell text.
CSV_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CSV_ESCAPE_MARK = "'"
# The manifest's name for the rule above (`csv_cells`); absent from older exports.
CSV_CELLS_ESCAPED = "formula-escaped"


def csv_cell_unescape(cell: str) -> str:
    """The value the exporter escaped into `cell`: one leading quote removed, if there is one."""
    return cell[1:] if cell.startswith(CSV_ESCAPE_MARK) else cell


def _public_key(text: bytes) -> Ed25519PublicKey:
    if text.strip().startswith(b"-----BEGIN"):
        key = serialization.load_pem_public_key(text)
    else:
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(text.strip().decode()))
    if not isinstance(key, Ed25519PublicKey):
        raise ExportInvalid("the public key is not an Ed25519 key")
    return key


def _csv_row(row: dict[str, Any], escaped: bool) -> dict[str, Any]:
    if escaped:
        for name, cell in row.items():
            if isinstance(cell, str) and cell.startswith(CSV_FORMULA_STARTS):
                raise ExportInvalid(
                    f"event {row.get('sequence')}'s {name} starts with a formula character: "
                    "it is not escaped as the exporter writes cells"
                )
        row = {name: csv_cell_unescape(cell) if isinstance(cell, str) else cell for name, cell in row.items()}
    try:
        sequence = int(row["sequence"])
    except (KeyError, ValueError) as error:
        raise ExportInvalid(f"a row's sequence is not a number: {row.get('sequence')!r}") from error
    return {**row, "sequence": sequence}


def _rows(body: bytes, manifest: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if manifest["format"] == "csv":
        if manifest.get("csv_cells", CSV_CELLS_ESCAPED) != CSV_CELLS_ESCAPED:
            raise ExportInvalid(f"this export writes CSV cells as {manifest['csv_cells']!r}, unknown here")
        escaped = "csv_cells" in manifest
        for row in csv.DictReader(io.StringIO(body.decode())):
            yield _csv_row(row, escaped)
    else:
        for line in body.decode().splitlines():
            yield json.loads(line)


def export_verify(archive_path: Path, public_key: Ed25519PublicKey) -> dict[str, Any]:
    """Raise `ExportInvalid` naming the first problem; return the manifest when all holds."""
    with zipfile.ZipFile(archive_path) as archive:
        manifest_bytes = archive.read("manifest.json")
        signature = archive.read("manifest.sig")
        manifest = json.loads(manifest_bytes)
        body = archive.read(manifest["events_file"])
    try:
        public_key.verify(base64.b64decode(signature), manifest_bytes)
    except (InvalidSignature, ValueError) as error:
        raise ExportInvalid("manifest.sig is not this key's signature of manifest.json") from error
    if hashlib.sha256(body).hexdigest() != manifest["events_sha256"]:
        raise ExportInvalid(f"{manifest['events_file']} is not the file the manifest was signed for")
    fields = manifest["chained_fields"]
    if list(fields) != list(chain.CHAINED_FIELDS):
        raise ExportInvalid("this export chains other fields than this verifier knows")
    previous, expected = manifest["previous_hash"], manifest["sequence_from"]
    for row in _rows(body, manifest):
        if row["sequence"] != expected:
            raise ExportInvalid(f"event {expected} is missing (found {row['sequence']})")
        if chain.link_hash(previous, chain.event_canonical([row[name] for name in fields])) != row["hash"]:
            raise ExportInvalid(f"event {expected}'s hash does not follow from its fields and predecessor")
        previous, expected = row["hash"], expected + 1
    if expected - 1 != manifest["sequence_to"] or previous != manifest["last_hash"]:
        raise ExportInvalid("the events stop short of the range the manifest covers")
    return dict(manifest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("export", type=Path)
    parser.add_argument("--public-key", type=Path, required=True, help="PEM, or the key's 64 hex digits")
    args = parser.parse_args(argv)
    try:
        manifest = export_verify(args.export, _public_key(args.public_key.read_bytes()))
    except ExportInvalid as problem:
        print(f"INVALID: {problem}")  # noqa: T201 - a command-line tool
        return 1
    print(  # noqa: T201 - a command-line tool
        f"valid: events {manifest['sequence_from']}-{manifest['sequence_to']} "
        f"({manifest['events']}), last hash {manifest['last_hash']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

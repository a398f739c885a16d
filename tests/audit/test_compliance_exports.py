"""Data exports: everything about the person, no secret, a manifest that verifies, downloads
only for the subject and officers, and every attempt on the record."""

import base64
import hashlib
import json
import zipfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import User
from audit.compliance import compliance_export_run, compliance_exports_expire, compliance_requests_sweep
from audit.models import AuditEvent, AuditSubject, ExportRequest
from tests.accounts.helpers import bearer_client, login
from tests.audit.people import (
    ADMIN_ADDRESS,
    ADMIN_AGENT,
    EMAIL,
    SECRET_PLAN,
    USERNAME,
    Person,
    console_client,
    console_user_change,
    person_with_everything,
)

URL = "/api/compliance/exports/"


@pytest.fixture
def person(alice: User) -> Person:
    return person_with_everything(admin=alice)


def _tasks_queued(callbacks: list[Any]) -> int:
    return sum("compliance_task_queue" in callback.__qualname__ for callback in callbacks)


def _ask(client: APIClient, django_capture_on_commit_callbacks: Any, **body: str) -> dict[str, Any]:
    # The task is queued on commit; the test runs it itself, the same code a worker runs.
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = client.post(URL, body, format="json")
    assert response.status_code == 202, response.content
    assert _tasks_queued(queued) == 1
    created: dict[str, Any] = response.json()
    assert created["status"] == "pending"
    compliance_export_run(export_id=created["id"])
    return created


def _download(client: APIClient, export_id: str, tmp_path: Path) -> zipfile.ZipFile:
    response = client.get(f"{URL}{export_id}/download/")
    assert response.status_code == 200, getattr(response, "content", b"")[:300]
    path = tmp_path / "export.zip"
    path.write_bytes(b"".join(response.streaming_content))
    return zipfile.ZipFile(path)


def test_an_export_holds_everything_about_the_person_and_no_secret(
    person: Person, tmp_path: Path, django_capture_on_commit_callbacks: Any
) -> None:
    client = bearer_client(person.access)
    created = _ask(client, django_capture_on_commit_callbacks)
    detail = client.get(f"{URL}{created['id']}/").json()
    assert (detail["status"], detail["progress"], detail["attempts"]) == ("done", 100, 1)
    assert detail["download_url"].endswith(f"{created['id']}/download/")
    archive = _download(client, created["id"], tmp_path)
    files = {name: archive.read(name) for name in archive.namelist()}
    assert set(files) == {
        "profile.json", "api_keys.json", "sessions.json", "quota_policies.json", "usage.json",
        "conversations.json", "audit_events.jsonl", "manifest.json", "manifest.sig",
    }  # fmt: skip
    profile = json.loads(files["profile.json"])
    assert (profile["username"], profile["email"], profile["teams"], profile["roles"]) == (
        USERNAME, EMAIL, ["gardeners"], ["member"]
    )  # fmt: skip
    (key,) = json.loads(files["api_keys.json"])
    assert (key["name"], key["prefix"], key["scopes"]) == ("garden-key", person.key.prefix, ["chat"])
    (conversation,) = json.loads(files["conversations.json"])
    assert [message["content"] for message in conversation["messages"]] == [SECRET_PLAN, "bloom"]
    usage = json.loads(files["usage.json"])
    assert [record["request_id"] for record in usage["records"]] == ["garden-request"]
    assert len(json.loads(files["sessions.json"])) == 1
    actions = [json.loads(line)["action"] for line in files["audit_events.jsonl"].splitlines()]
    for expected in ("user.created", "auth.login.succeeded", "auth.login.failed", "apikey.created",
                     "compliance.export.requested"):  # fmt: skip
        assert expected in actions
    # Secrets never: not the key, not its stored hash, not the password hash.
    everything = b"".join(files.values())
    person.key.refresh_from_db()
    for secret in (person.key_secret, person.key.secret_hash, person.user.password):
        assert secret.encode() not in everything
    # The manifest names every file's digest and is signed by the platform's key.
    manifest = json.loads(files["manifest.json"])
    for name, digest in manifest["files"].items():
        assert hashlib.sha256(files[name]).hexdigest() == digest
    public_key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(manifest["public_key"]))
    public_key.verify(base64.b64decode(files["manifest.sig"]), files["manifest.json"])
    downloaded = AuditEvent.objects.filter(action="compliance.export.downloaded").get()
    assert downloaded.actor_display == USERNAME
    assert ExportRequest.objects.get(pk=created["id"]).downloads == 1


def test_a_strangers_download_is_a_404_and_is_audited(
    person: Person, bob: User, django_capture_on_commit_callbacks: Any
) -> None:
    created = _ask(bearer_client(person.access), django_capture_on_commit_callbacks)
    stranger = bearer_client(login(bob).access)
    assert stranger.get(f"{URL}{created['id']}/download/").status_code == 404
    assert stranger.get(f"{URL}{created['id']}/").status_code == 404
    refused = AuditEvent.objects.get(action="compliance.export.download_refused")
    assert refused.actor_display == "bob"
    assert refused.outcome == AuditEvent.Outcome.DENIED
    assert refused.target_id == created["id"]
    assert not AuditEvent.objects.filter(action="compliance.export.downloaded").exists()


def test_an_officer_exports_anyone_and_a_member_only_themselves(
    person: Person, bob: User, olga: User, tmp_path: Path, django_capture_on_commit_callbacks: Any
) -> None:
    officer = bearer_client(login(olga).access)
    created = _ask(officer, django_capture_on_commit_callbacks, subject=USERNAME)
    assert created["subject"] == USERNAME
    assert "profile.json" in _download(officer, created["id"], tmp_path).namelist()
    refused = bearer_client(login(bob).access).post(URL, {"subject": USERNAME}, format="json")
    assert refused.status_code == 400
    assert refused.json() == {"subject": [f"You cannot ask this for {USERNAME!r}."]}
    # Unknown people get the same answer, so members cannot probe who exists.
    unknown = bearer_client(login(bob).access).post(URL, {"subject": "nobody-at-all"}, format="json")
    assert unknown.json() == {"subject": ["You cannot ask this for 'nobody-at-all'."]}


def test_a_second_export_while_one_is_open_is_a_conflict(bob: User) -> None:
    client = bearer_client(login(bob).access)
    first = client.post(URL, format="json")
    second = client.post(URL, format="json")
    assert second.status_code == 409
    assert second.json()["existing"] == first.json()["id"]
    assert ExportRequest.objects.filter(subject=bob).count() == 1


def test_api_keys_cannot_reach_personal_data_workflows(person: Person) -> None:
    with_key = bearer_client(person.key_secret)
    assert with_key.post(URL, format="json").status_code == 403
    assert with_key.get(URL).status_code == 403
    assert with_key.post("/api/compliance/erasures/", format="json").status_code == 403


def test_running_twice_builds_once(bob: User) -> None:
    client = bearer_client(login(bob).access)
    export_id = client.post(URL, format="json").json()["id"]
    compliance_export_run(export_id=export_id)
    first = ExportRequest.objects.get(pk=export_id)
    compliance_export_run(export_id=export_id)  # a redelivered message
    again = ExportRequest.objects.get(pk=export_id)
    assert (again.attempts, again.file_sha256, again.finished_at) == (1, first.file_sha256, first.finished_at)
    assert AuditEvent.objects.filter(action="compliance.export.completed").count() == 1


def test_an_expired_link_is_gone_and_its_file_deleted(
    bob: User, compliance_export_dir: Path, django_capture_on_commit_callbacks: Any
) -> None:
    client = bearer_client(login(bob).access)
    created = _ask(client, django_capture_on_commit_callbacks)
    export = ExportRequest.objects.get(pk=created["id"])
    ExportRequest.objects.filter(pk=export.pk).update(
        download_expires_at=timezone.now() - timedelta(minutes=1)
    )
    assert client.get(f"{URL}{export.pk}/download/").status_code == 410
    assert compliance_exports_expire() == 1
    assert not (compliance_export_dir / export.file_name).exists()
    assert ExportRequest.objects.get(pk=export.pk).file_name == ""
    assert AuditEvent.objects.filter(action="compliance.export.expired", target_id=str(export.pk)).exists()


def test_a_request_not_done_cannot_be_downloaded(bob: User) -> None:
    client = bearer_client(login(bob).access)
    export_id = client.post(URL, format="json").json()["id"]
    response = client.get(f"{URL}{export_id}/download/")
    assert response.status_code == 409
    assert "pending" in response.json()["detail"]


def test_the_sweeper_requeues_a_lost_request_and_gives_up_after_the_limit(
    bob: User, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.GATEHOUSE_COMPLIANCE_MAX_ATTEMPTS = 2
    export_id = bearer_client(login(bob).access).post(URL, format="json").json()["id"]
    long_ago = timezone.now() - timedelta(hours=1)
    # As a worker killed mid-way leaves it: running, its heartbeat stopped.
    ExportRequest.objects.filter(pk=export_id).update(status="running", attempts=2, heartbeat_at=long_ago)
    with django_capture_on_commit_callbacks(execute=False) as queued:
        assert compliance_requests_sweep() == 1
    assert _tasks_queued(queued) == 1
    assert ExportRequest.objects.get(pk=export_id).status == "pending"
    assert AuditEvent.objects.filter(action="compliance.export.requeued").exists()
    compliance_export_run(export_id=export_id)
    failed = ExportRequest.objects.get(pk=export_id)
    assert (failed.status, failed.error) == ("failed", "gave up after 2 attempts")
    assert AuditEvent.objects.filter(action="compliance.export.failed").exists()


def test_a_file_gone_from_the_volume_is_gone_not_an_error(
    bob: User, compliance_export_dir: Path, django_capture_on_commit_callbacks: Any
) -> None:
    client = bearer_client(login(bob).access)
    created = _ask(client, django_capture_on_commit_callbacks)
    (compliance_export_dir / ExportRequest.objects.get(pk=created["id"]).file_name).unlink()
    response = client.get(f"{URL}{created['id']}/download/")
    assert response.status_code == 410
    assert "ask for a new export" in response.json()["detail"]


def test_a_persons_export_shows_the_staff_who_acted_on_them_by_role_only(
    alice: User, bob: User, tmp_path: Path, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # Two exports of bob one after the other: no cooldown between them here.
    settings.GATEHOUSE_COMPLIANCE_EXPORT_COOLDOWN_SECONDS = 0
    # An administrator edits bob in the console and, through the API, asks for his export.
    console_user_change(console_client(admin=alice), user=bob, first_name="Robert")
    staff_api = APIClient(REMOTE_ADDR=ADMIN_ADDRESS, HTTP_USER_AGENT=ADMIN_AGENT)
    staff_api.credentials(HTTP_AUTHORIZATION=f"Bearer {login(alice).access}")
    _ask(staff_api, django_capture_on_commit_callbacks, subject="bob")
    staff_rows = AuditEvent.objects.filter(actor=alice, target_pseudonym__isnull=False)
    assert {"console.changed", "compliance.export.requested"} <= set(
        staff_rows.values_list("action", flat=True)
    )
    assert staff_rows.filter(client_ip=ADMIN_ADDRESS, user_agent=ADMIN_AGENT).exists()

    mine = bearer_client(login(bob).access)
    created = _ask(mine, django_capture_on_commit_callbacks)
    section = _download(mine, created["id"], tmp_path).read("audit_events.jsonl").decode()
    alice_pseudonym = str(AuditSubject.objects.get(user=alice).pseudonym)
    for detail in ("alice", ADMIN_ADDRESS, ADMIN_AGENT, alice_pseudonym):
        assert detail not in section
    records = [json.loads(line) for line in section.splitlines()]
    by_staff = [
        record for record in records if record["action"] in ("console.changed", "compliance.export.requested")
    ]
    assert len(by_staff) >= 3  # the change, the administrator's request, bob's own request
    for record in by_staff:
        if record["actor_display"] == "bob":
            continue  # bob's own request: his own details stay
        assert (record["actor_kind"], record["actor_roles"]) == ("user", ["admin"])
        assert (record["actor_display"], record["client_ip"], record["user_agent"]) == ("", "", "")
        assert record["actor_pseudonym"] == ""
        assert "actor_pseudonym" in record["withheld"]
    own = [record for record in records if record["actor_display"] == "bob"]
    assert own
    assert all(record["withheld"] == [] for record in own)


def _frozen_clock(monkeypatch: pytest.MonkeyPatch, start: Any) -> list[Any]:
    """Freeze `timezone.now`; the returned list's one item is the time, to move it on."""
    clock = [start]
    monkeypatch.setattr(timezone, "now", lambda: clock[0])
    return clock


def test_exports_asked_back_to_back_return_the_last_until_the_cooldown_ends(
    bob: User, settings: Any, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    settings.GATEHOUSE_COMPLIANCE_EXPORT_COOLDOWN_SECONDS = 3600
    clock = _frozen_clock(monkeypatch, timezone.now())
    client = bearer_client(login(bob).access)
    first = _ask(client, django_capture_on_commit_callbacks)
    clock[0] += timedelta(minutes=10)
    for _ in range(4):
        again = client.post(URL, format="json")
        assert again.status_code == 429, again.content
        assert again["Retry-After"] == "3000"
        body = again.json()
        assert body["existing"] == first["id"]
        assert "already has an export" in body["detail"]
    assert ExportRequest.objects.filter(subject=bob).count() == 1
    # The last one stays downloadable meanwhile; once the cooldown is over a new one is built.
    assert client.get(f"{URL}{first['id']}/download/").status_code == 200
    clock[0] += timedelta(minutes=50)
    assert _ask(client, django_capture_on_commit_callbacks)["id"] != first["id"]


def test_the_cooldown_is_per_subject_whoever_asks(
    person: Person, bob: User, olga: User, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.GATEHOUSE_COMPLIANCE_EXPORT_COOLDOWN_SECONDS = 3600
    _ask(bearer_client(login(bob).access), django_capture_on_commit_callbacks)
    officer = bearer_client(login(olga).access)
    on_behalf = officer.post(URL, {"subject": "bob"}, format="json")
    assert on_behalf.status_code == 429
    assert int(on_behalf["Retry-After"]) > 0
    # Another person's export is not held back by bob's.
    assert _ask(officer, django_capture_on_commit_callbacks, subject=USERNAME)["subject"] == USERNAME


def test_a_failed_export_does_not_hold_back_a_new_one(bob: User, settings: Any) -> None:
    settings.GATEHOUSE_COMPLIANCE_EXPORT_COOLDOWN_SECONDS = 3600
    client = bearer_client(login(bob).access)
    export_id = client.post(URL, format="json").json()["id"]
    ExportRequest.objects.filter(pk=export_id).update(status="failed", finished_at=timezone.now())
    assert client.post(URL, format="json").status_code == 202


def test_the_schema_documents_the_cooldown() -> None:
    schema = APIClient().get("/api/schema/", HTTP_ACCEPT="application/json").json()
    answers = schema["paths"]["/api/compliance/exports/"]["post"]["responses"]
    assert "Retry-After" in answers["429"]["description"]

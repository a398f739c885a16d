"""Key rotation: new data keys, a new master key, and the background re-encryption."""

import hashlib
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from accounts.models import User
from audit.compliance import compliance_exports_expire
from audit.models import ExportRequest
from encryption import reencryption
from encryption.checks import data_keys_check
from encryption.data_keys import DataKeyUnavailable, data_key_current, data_keys_forget
from encryption.files import sealed_file_key_id
from encryption.models import DataKey
from encryption.selectors import encryption_status
from encryption.services import data_key_rotate, encryption_maintain
from inference.models import Conversation, Message, ModelVersion
from tests.encryption.helpers import (
    export_built,
    master_key_entry,
    plain_content_store,
    stored_contents,
    stored_key_ids,
)

pytestmark = pytest.mark.django_db


def _conversation(bob: User, version: ModelVersion, *texts: str) -> Conversation:
    conversation = Conversation.objects.create(owner=bob, model=version.model, title=texts[0])
    for text in texts:
        Message.objects.create(conversation=conversation, role="user", content=text)
    return conversation


def _said(conversation: Conversation) -> list[str]:
    return [message.content for message in Message.objects.filter(conversation=conversation)]


def test_a_new_data_key_takes_over_and_the_pass_moves_old_content_to_it(
    master_key_a: str, bob: User, demo_version: ModelVersion
) -> None:
    before = _conversation(bob, demo_version, "one", "two")
    old = data_key_current().id
    new = data_key_rotate().pk
    after = _conversation(bob, demo_version, "three")
    assert stored_key_ids() == [old, old, new]
    assert _said(before) == ["one", "two"]  # the retired key still decrypts

    summary = encryption_maintain()

    assert summary["rows_rewritten"] == 3  # two messages and one title
    assert stored_key_ids() == [new, new, new]
    assert list(DataKey.objects.values_list("pk", flat=True)) == [new]  # nothing uses the old one
    assert (_said(before), _said(after)) == (["one", "two"], ["three"])
    assert Conversation.objects.get(pk=before.pk).title == "one"
    assert encryption_maintain() == {"rotated": False, "rewrapped": 0}  # nothing left to do


def test_a_retired_key_outlives_the_time_processes_may_still_write_with_it(
    master_key_a: str, settings: Any, bob: User, demo_version: ModelVersion
) -> None:
    settings.GATEHOUSE_ENCRYPTION_KEY_CACHE_SECONDS = 60
    _conversation(bob, demo_version, "one")
    old = data_key_current().id
    new = data_key_rotate().pk
    encryption_maintain()
    assert set(stored_key_ids()) == {new}
    assert DataKey.objects.filter(pk=old).exists()  # retired a moment ago: kept
    DataKey.objects.filter(pk=old).update(retired_at=timezone.now() - timedelta(minutes=3))
    encryption_maintain()
    assert not DataKey.objects.filter(pk=old).exists()


def test_a_new_master_key_rewraps_every_data_key_so_the_old_one_can_go(
    master_key_a: str, settings: Any, bob: User, demo_version: ModelVersion
) -> None:
    conversation = _conversation(bob, demo_version, "kept safe")
    settings.GATEHOUSE_ENCRYPTION_KEYS = f"{master_key_entry('b')},{master_key_a}"
    data_keys_forget()
    # The next write starts a data key under the new primary; the pass moves the rest to it.
    summary = encryption_maintain()
    assert (summary["rewrapped"], summary["rows_rewritten"]) == (1, 2)
    assert list(DataKey.objects.values_list("master_key_id", flat=True)) == ["b"]  # the old one is gone

    settings.GATEHOUSE_ENCRYPTION_KEYS = settings.GATEHOUSE_ENCRYPTION_KEYS.split(",")[0]
    data_keys_forget()
    assert _said(conversation) == ["kept safe"]
    assert not [m for m in data_keys_check(databases=["default"]) if m.id == "gatehouse.E012"]


def test_once_rewrapped_the_old_master_key_can_go_though_the_retired_data_key_is_kept(
    master_key_a: str, settings: Any, bob: User, demo_version: ModelVersion
) -> None:
    settings.GATEHOUSE_ENCRYPTION_KEY_CACHE_SECONDS = 60  # retired keys are kept a while
    conversation = _conversation(bob, demo_version, "kept safe")
    settings.GATEHOUSE_ENCRYPTION_KEYS = f"{master_key_entry('b')},{master_key_a}"
    data_keys_forget()
    assert encryption_maintain()["rewrapped"] == 1
    keys = [(key.master_key_id, key.retired_at is None) for key in DataKey.objects.all()]
    assert keys == [("b", True), ("b", False)]  # newest first: the current, and the retired one
    settings.GATEHOUSE_ENCRYPTION_KEYS = settings.GATEHOUSE_ENCRYPTION_KEYS.split(",")[0]
    data_keys_forget()
    assert _said(conversation) == ["kept safe"]


def test_content_under_a_master_key_that_is_gone_is_refused_in_words_and_flagged(
    master_key_a: str, settings: Any, bob: User, demo_version: ModelVersion
) -> None:
    conversation = _conversation(bob, demo_version, "lost")
    settings.GATEHOUSE_ENCRYPTION_KEYS = master_key_entry("b")
    data_keys_forget()
    with pytest.raises(DataKeyUnavailable, match="master key 'a', which is not in GATEHOUSE_ENCRYPTION_KEYS"):
        _said(conversation)
    errors = [message for message in data_keys_check(databases=["default"]) if message.id == "gatehouse.E012"]
    assert len(errors) == 1
    assert "'a'" in errors[0].msg
    # The pass cannot move it, so it keeps the key that still protects it.
    summary = encryption_maintain()
    assert summary["unreadable"] == 2
    assert summary["rows_rewritten"] == 0
    assert DataKey.objects.filter(master_key_id="a").exists()


def test_a_row_changed_during_the_pass_keeps_the_change(
    master_key_a: str, bob: User, demo_version: ModelVersion, monkeypatch: pytest.MonkeyPatch
) -> None:
    conversation = _conversation(bob, demo_version, "first")
    message = Message.objects.get(conversation=conversation)
    old = data_key_current().id
    data_key_rotate()
    real_open = reencryption.text_open

    def open_while_someone_edits(**kwargs: Any) -> str:
        plain = real_open(**kwargs)
        if kwargs["purpose"] == "inference.message.content":
            Message.objects.filter(pk=message.pk).update(content="edited meanwhile")
        return plain

    monkeypatch.setattr(reencryption, "text_open", open_while_someone_edits)
    report = reencryption.reencryption_run()
    assert _said(conversation) == ["edited meanwhile"]
    assert report.rows_rewritten == 1  # the title; the message was not overwritten
    assert not DataKey.objects.filter(pk=old).exists()


def test_plain_text_written_around_gatehouse_is_refused_on_read_and_encrypted_by_a_full_pass(
    master_key_a: str, bob: User, demo_version: ModelVersion
) -> None:
    conversation = _conversation(bob, demo_version, "sealed")
    plain_content_store(message=Message.objects.get(conversation=conversation), text="imported")
    with pytest.raises(Exception, match="is not encrypted"):
        _said(conversation)
    assert encryption_status().plain_rows == 1
    assert encryption_maintain() == {"rotated": False, "rewrapped": 0}  # no retired key: no pass
    assert encryption_maintain(full_pass=True)["rows_rewritten"] == 1
    assert "imported" not in stored_contents()
    assert _said(conversation) == ["imported"]


def test_a_data_key_past_its_age_is_rotated(
    master_key_a: str, settings: Any, bob: User, demo_version: ModelVersion
) -> None:
    _conversation(bob, demo_version, "aging")
    old = data_key_current().id
    DataKey.objects.filter(pk=old).update(created_at=timezone.now() - timedelta(days=91))
    summary = encryption_maintain()
    assert summary["rotated"] is True
    assert summary["rows_rewritten"] == 2
    assert old not in stored_key_ids()
    assert not DataKey.objects.filter(pk=old).exists()


def test_export_files_move_to_the_new_key_and_still_download(
    master_key_a: str, alice: User, compliance_export_dir: Path, django_capture_on_commit_callbacks: Any
) -> None:
    built = export_built(admin=alice, capture_on_commit=django_capture_on_commit_callbacks)
    client, export = built.client, built.export
    path = compliance_export_dir / export.file_name
    old = sealed_file_key_id(path=path)
    new = data_key_rotate().pk
    summary = encryption_maintain()
    assert (old != new, sealed_file_key_id(path=path), summary["files_rewritten"]) == (True, new, 1)
    body = b"".join(client.get(f"/api/compliance/exports/{export.pk}/download/").streaming_content)
    assert hashlib.sha256(body).hexdigest() == export.file_sha256


def test_the_commands_rotate_and_report(
    master_key_a: str, bob: User, demo_version: ModelVersion, capsys: pytest.CaptureFixture[str]
) -> None:
    _conversation(bob, demo_version, "status")
    old = data_key_current().id
    call_command("encryption_rotate", "--wait")
    out = capsys.readouterr().out
    assert "is now current" in out
    assert '"rows_rewritten": 2' in out
    call_command("encryption_status")
    out = capsys.readouterr().out
    new = DataKey.objects.get().pk
    assert new != old
    assert f"data key {new}: current" in out
    assert "seals 2 rows and 0 files" in out


@pytest.mark.usefixtures("master_key_a")
@pytest.mark.parametrize("deleted", ["file and row", "row only"])
def test_an_export_deleted_while_it_is_reencrypted_does_not_come_back(
    alice: User,
    compliance_export_dir: Path,
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
    deleted: str,
) -> None:
    export = export_built(admin=alice, capture_on_commit=django_capture_on_commit_callbacks).export
    path = compliance_export_dir / export.file_name
    data_key_rotate()
    real_copy = reencryption._copy

    def copy_while_erased(source: Any, writer: Any) -> None:
        real_copy(source, writer)
        # The person is erased (or the export expires) while the copy is being written.
        ExportRequest.objects.filter(pk=export.pk).delete()
        if deleted == "file and row":
            path.unlink()

    monkeypatch.setattr(reencryption, "_copy", copy_while_erased)
    summary = encryption_maintain()
    assert summary["files_rewritten"] == 0
    assert not path.exists()
    assert not list(compliance_export_dir.glob(f".{path.name}*"))


@pytest.mark.usefixtures("master_key_a")
def test_a_copy_that_fails_midway_leaves_the_file_as_it_was_and_no_partial(
    alice: User,
    compliance_export_dir: Path,
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    export = export_built(admin=alice, capture_on_commit=django_capture_on_commit_callbacks).export
    path = compliance_export_dir / export.file_name
    before = path.read_bytes()
    data_key_rotate()

    def copy_then_fail(source: Any, writer: Any) -> None:
        writer.write(source.read(100_000))
        raise OSError("no space left on device")

    monkeypatch.setattr(reencryption, "_copy", copy_then_fail)
    with pytest.raises(OSError, match="no space left"):
        encryption_maintain()
    assert path.read_bytes() == before
    assert not list(compliance_export_dir.glob(f".{path.name}*"))


def test_the_sweep_deletes_export_files_no_request_names(compliance_export_dir: Path) -> None:
    compliance_export_dir.mkdir(parents=True, exist_ok=True)
    orphan, fresh = compliance_export_dir / "export-orphan.zip", compliance_export_dir / "export-fresh.zip"
    orphan.write_bytes(b"left by a race")
    fresh.write_bytes(b"a build about to save its request")
    old = (timezone.now() - timedelta(hours=2)).timestamp()
    os.utime(orphan, (old, old))
    compliance_exports_expire()
    assert not orphan.exists()
    assert fresh.exists()
    fresh.unlink()

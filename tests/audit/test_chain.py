"""The chain: appends link up once sealed, the database refuses edits, and tampering is caught.

Each tampering test works as a database superuser would (triggers out of the way) and checks
that verification names what was done: an edited row, a deleted row, a cut tail, a whole
chain recomputed after an edit (caught only by the signed checkpoint outside the database).
The background sealer is off in the test suite: tests seal when they mean to
(`tests.audit.sealed`); sealing itself is tested in `test_sealing.py`.
"""

import base64
import json
import threading
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction

from accounts.models import User
from audit import chain
from audit.checkpoints import audit_checkpoint_write, checkpoints_read, public_key_raw
from audit.models import AuditEvent, AuditSubject
from audit.services import audit_event_record
from audit.subjects import audit_subject_erase
from audit.verification import audit_chain_verify
from tests.audit.sealed import sealed
from tests.audit.tampering import as_database_superuser, chain_recompute, sql


def _trail(actor: User, count: int = 6) -> list[AuditEvent]:
    """`count` events, sealed."""
    return sealed(
        *[audit_event_record(action=f"test.step.{n}", actor=actor, metadata={"n": n}) for n in range(count)]
    )


def test_events_are_numbered_and_linked_from_genesis(alice: User) -> None:
    sealed()
    start = AuditEvent.objects.count()
    events = _trail(alice, 3)
    assert [event.sequence for event in events] == [start + 1, start + 2, start + 3]
    previous = AuditEvent.objects.get(sequence=start).hash if start else chain.GENESIS
    for event in events:
        stored = AuditEvent.objects.get(pk=event.pk)
        expected = chain.link_hash(previous, chain.event_canonical(_chained(stored)))
        assert stored.hash == expected
        previous = expected
    report = audit_chain_verify()
    assert report.ok, report.as_dict()
    assert report.events == start + 3
    assert report.head_hash == events[-1].hash


def _chained(event: AuditEvent) -> list[object]:
    from audit.services import chained_values

    return chained_values(event)


def test_rows_carry_pseudonyms_and_digests_not_only_names(alice: User, bob: User) -> None:
    event = audit_event_record(action="test.about", actor=alice, target=bob)
    subject = AuditSubject.objects.get(user=alice)
    assert event.actor_pseudonym == str(subject.pseudonym)
    assert event.target_pseudonym == str(AuditSubject.objects.get(user=bob).pseudonym)
    # The display is kept for readers, but what the chain covers is the pseudonym and a digest.
    assert event.actor_display == "alice"
    canonical = chain.event_canonical(_chained(event)).decode()
    assert "alice" not in canonical
    assert "bob" not in canonical


def test_the_database_refuses_updates_and_deletes(alice: User) -> None:
    (event,) = sealed(audit_event_record(action="test.frozen", actor=alice))
    for statement in (
        "UPDATE audit_auditevent SET action = 'test.edited' WHERE id = %s",
        "UPDATE audit_auditevent SET actor_display = 'mallory' WHERE id = %s",
        "UPDATE audit_auditevent SET hash = 'x' WHERE id = %s",
        "DELETE FROM audit_auditevent WHERE id = %s",
    ):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            sql(statement, [event.pk])
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).delete()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(outcome="failure")
    assert AuditEvent.objects.get(pk=event.pk).action == "test.frozen"


def test_an_unsealed_row_is_as_frozen_but_for_its_seal(alice: User) -> None:
    """Before sealing, the same refusals hold; the seal sets sequence and hash once, alone."""
    event = audit_event_record(action="test.frozen", actor=alice)
    assert (event.sequence, event.hash) == (None, None)
    for statement in (
        "UPDATE audit_auditevent SET action = 'test.edited' WHERE id = %s",
        "UPDATE audit_auditevent SET row_digest = 'x' WHERE id = %s",
        "UPDATE audit_auditevent SET actor_display = 'mallory' WHERE id = %s",
        # Half a seal, or a seal with anything else changed along with it.
        "UPDATE audit_auditevent SET sequence = 999999 WHERE id = %s",
        "UPDATE audit_auditevent SET hash = 'x' WHERE id = %s",
        "UPDATE audit_auditevent SET sequence = 999999, hash = 'x', outcome = 'failure' WHERE id = %s",
        "UPDATE audit_auditevent SET sequence = 999999, hash = 'x', actor_display = '' WHERE id = %s",
        "DELETE FROM audit_auditevent WHERE id = %s",
    ):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            sql(statement, [event.pk])
    sql("UPDATE audit_auditevent SET sequence = 999999, hash = 'x' WHERE id = %s", [event.pk])
    # Once, and never again: not re-sealed elsewhere, not unsealed.
    for statement in (
        "UPDATE audit_auditevent SET sequence = 999998, hash = 'y' WHERE id = %s",
        "UPDATE audit_auditevent SET hash = 'y' WHERE id = %s",
        "UPDATE audit_auditevent SET sequence = NULL, hash = NULL WHERE id = %s",
    ):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            sql(statement, [event.pk])
    assert AuditEvent.objects.filter(pk=event.pk).values_list("sequence", "hash").get() == (999999, "x")


@pytest.mark.django_db(transaction=True)
def test_postgresql_refuses_truncate(alice: User) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has no TRUNCATE; its DELETE trigger is tested above")
    audit_event_record(action="test.frozen", actor=alice)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        sql("TRUNCATE audit_auditevent")
    assert AuditEvent.objects.filter(action="test.frozen").exists()


def test_blanking_personal_details_is_the_one_change_allowed(alice: User) -> None:
    unsealed = audit_event_record(action="test.blank", actor=alice)
    (event,) = sealed(audit_event_record(action="test.blank", actor=alice))
    for row in (unsealed, event):
        sql("UPDATE audit_auditevent SET actor_display = '', actor_id = NULL WHERE id = %s", [row.pk])
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            sql("UPDATE audit_auditevent SET actor_display = '', outcome = 'failure' WHERE id = %s", [row.pk])
        assert AuditEvent.objects.get(pk=row.pk).actor_display == ""
    # The blanked row still seals: its digest does not cover personal details. (Blanked by hand,
    # not by erasure, the personal check flags it; the chain holds.)
    (unsealed,) = sealed(unsealed)
    assert unsealed.sequence is not None
    report = audit_chain_verify()
    assert report.first_break is None
    assert report.tampered_pending_count == 0


def test_deleting_a_user_keeps_their_events_and_the_chain(alice: User) -> None:
    temp = User.objects.create_user(username="temp", password="x" * 20)
    audit_event_record(action="test.by_temp", actor=temp)
    temp.delete()
    (event,) = sealed(AuditEvent.objects.get(action="test.by_temp"))
    assert event.actor_id is None
    assert event.actor_display == "temp"
    assert audit_chain_verify().ok


def test_an_edited_row_is_the_first_broken_link(alice: User) -> None:
    events = _trail(alice)
    with as_database_superuser():
        sql("UPDATE audit_auditevent SET outcome = 'failure' WHERE id = %s", [events[2].pk])
    report = audit_chain_verify()
    assert not report.ok
    assert report.first_break is not None
    assert report.first_break.sequence == events[2].sequence
    assert "does not match" in report.first_break.reason


def test_edited_metadata_is_caught(alice: User) -> None:
    events = _trail(alice)
    with as_database_superuser():
        sql(
            "UPDATE audit_auditevent SET metadata_json = %s WHERE id = %s",
            [json.dumps({"n": 99}), events[1].pk],
        )
    report = audit_chain_verify()
    assert report.first_break is not None
    assert report.first_break.sequence == events[1].sequence


def test_a_renamed_actor_is_caught_by_the_personal_digest(alice: User) -> None:
    events = _trail(alice, 3)
    with as_database_superuser():
        sql("UPDATE audit_auditevent SET actor_display = 'bob' WHERE id = %s", [events[1].pk])
    report = audit_chain_verify()
    # The chain does not cover names (so erasure cannot break it); the keyed digest does.
    assert report.first_break is None
    assert not report.ok
    assert [problem.sequence for problem in report.personal_problems] == [events[1].sequence]
    assert "altered" in report.personal_problems[0].reason


def test_a_deleted_row_is_reported_missing(alice: User) -> None:
    events = _trail(alice)
    with as_database_superuser():
        sql("DELETE FROM audit_auditevent WHERE id = %s", [events[3].pk])
    report = audit_chain_verify()
    assert report.first_break is not None
    assert report.first_break.sequence == events[3].sequence
    assert "missing" in report.first_break.reason


def test_a_cut_tail_is_caught_by_the_checkpoint(alice: User) -> None:
    events = _trail(alice)
    sealed = audit_checkpoint_write()
    assert sealed is not None
    assert sealed.sequence == events[-1].sequence
    with as_database_superuser():
        sql("DELETE FROM audit_auditevent WHERE sequence > %s", [events[3].sequence])
    report = audit_chain_verify()
    # What is left is a sound chain; only the checkpoint knows it used to be longer.
    assert report.first_break is None
    assert not report.ok
    assert "removed from the end" in report.checkpoint_problems[0].reason


def test_a_recomputed_chain_is_caught_by_the_checkpoint(alice: User) -> None:
    events = _trail(alice)
    audit_checkpoint_write()
    with as_database_superuser():
        sql("UPDATE audit_auditevent SET outcome = 'denied' WHERE id = %s", [events[1].pk])
        chain_recompute()
    report = audit_chain_verify()
    assert report.first_break is None  # every link holds again...
    assert not report.ok  # ...but not the hash signed outside the database
    assert "rewritten" in report.checkpoint_problems[0].reason


def test_a_forged_checkpoint_is_refused(alice: User, audit_checkpoints: object) -> None:
    _trail(alice, 2)
    written = audit_checkpoint_write()
    assert written is not None
    path = checkpoints_read()[-1]
    target = audit_checkpoints / path.file  # type: ignore[operator]
    body = json.loads(target.read_text())
    body["hash"] = "f" * 64
    target.write_text(json.dumps(body))
    report = audit_chain_verify()
    assert not report.ok
    assert "signature does not verify" in report.checkpoint_problems[0].reason


def test_checkpoints_are_written_once_per_head(alice: User) -> None:
    _trail(alice, 2)
    first = audit_checkpoint_write()
    assert audit_checkpoint_write() == first
    audit_event_record(action="test.more", actor=alice)
    # The checkpoint seals what is pending first: it signs the new event's position.
    second = audit_checkpoint_write()
    assert second is not None
    assert first is not None
    assert second.sequence == first.sequence + 1
    assert len(checkpoints_read()) == 2
    assert audit_chain_verify().checkpoints_checked == 2


def test_erasure_cuts_the_link_and_the_chain_still_verifies(alice: User, bob: User) -> None:
    audit_event_record(action="test.by_bob", actor=bob)
    audit_event_record(action="test.about_bob", actor=alice, target=bob)
    audit_checkpoint_write()
    pseudonym = AuditSubject.objects.get(user=bob).pseudonym
    about_bob = (
        AuditEvent.objects.filter(actor_pseudonym=pseudonym).count()
        + AuditEvent.objects.filter(target_pseudonym=pseudonym).count()
    )
    assert about_bob >= 3  # his creation, and the two above
    assert audit_subject_erase(user=bob) == about_bob
    by_bob = AuditEvent.objects.get(action="test.by_bob")
    assert (by_bob.actor_display, by_bob.actor_id, by_bob.client_ip) == ("", None, None)
    assert AuditEvent.objects.get(action="test.about_bob").target_display == ""
    subject = AuditSubject.objects.get(pseudonym=by_bob.actor_pseudonym)
    assert subject.key == ""
    assert subject.display == ""
    assert subject.user is None
    report = audit_chain_verify()
    assert report.ok, report.as_dict()
    # Writing the name back in is noticed: an erased person's rows must stay blank.
    with as_database_superuser():
        sql("UPDATE audit_auditevent SET actor_display = 'bob' WHERE id = %s", [by_bob.pk])
    report = audit_chain_verify()
    assert not report.ok
    assert "erased" in report.personal_problems[0].reason


def test_the_command_exits_non_zero_on_a_broken_chain(
    alice: User, capsys: pytest.CaptureFixture[str]
) -> None:
    events = _trail(alice, 3)
    call_command("audit_verify")
    assert "the audit trail verifies" in capsys.readouterr().out
    with as_database_superuser():
        sql("UPDATE audit_auditevent SET action = 'test.forged' WHERE id = %s", [events[0].pk])
    with pytest.raises(CommandError) as raised:
        call_command("audit_verify")
    assert raised.value.returncode == 1
    assert f"event {events[0].sequence}'s hash does not match" in capsys.readouterr().out


@pytest.mark.django_db(transaction=True)
def test_concurrent_appends_never_fork_the_chain(alice: User) -> None:
    """Many transactions append at once (on PostgreSQL in the production profile)."""
    threads, each = 8, 25
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads)

    def append(worker: int) -> None:
        try:
            barrier.wait()
            for n in range(each):
                with transaction.atomic():
                    audit_event_record(action="test.race", actor=alice, metadata={"worker": worker, "n": n})
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            connection.close()

    workers = [threading.Thread(target=append, args=(worker,)) for worker in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    assert AuditEvent.objects.filter(action="test.race").count() == threads * each
    sealed()
    sequences = list(AuditEvent.objects.order_by("sequence").values_list("sequence", flat=True))
    assert sequences == list(range(1, len(sequences) + 1))
    report = audit_chain_verify()
    assert report.ok, report.as_dict()
    assert report.pending_events == 0


def test_beat_seals_the_head_with_the_checkpoint_task(alice: User) -> None:
    from django.conf import settings as live

    from audit.tasks import audit_checkpoint_write as task
    from gatehouse.celery import app

    schedule = live.CELERY_BEAT_SCHEDULE["audit-checkpoint"]
    assert schedule["task"] in app.tasks
    (head,) = sealed(audit_event_record(action="test.sealed", actor=alice))
    assert task.apply().get() == head.sequence
    assert checkpoints_read()[-1].hash == head.hash


def test_a_malformed_signing_key_is_refused_with_a_clear_message(settings: Any) -> None:
    from django.core.exceptions import ImproperlyConfigured

    from audit.checkpoints import signing_key

    settings.GATEHOUSE_AUDIT_SIGNING_KEY = "change-me-base64-32-bytes"
    with pytest.raises(ImproperlyConfigured, match="base64 of 32 random bytes"):
        signing_key()
    settings.GATEHOUSE_AUDIT_SIGNING_KEY = base64.b64encode(bytes(range(32))).decode()
    assert len(public_key_raw(signing_key().public_key())) == 32


def test_checkpoints_of_a_rotated_key_verify_once_it_is_listed_as_retired(
    alice: User, audit_checkpoints: object, settings: Any
) -> None:
    old_seed, new_seed = base64.b64encode(b"o" * 32).decode(), base64.b64encode(b"n" * 32).decode()
    settings.GATEHOUSE_AUDIT_SIGNING_KEY = old_seed
    _trail(alice, 2)
    assert audit_checkpoint_write() is not None
    printed = StringIO()
    call_command("audit_public_key", stdout=printed)
    old_public = printed.getvalue().split("base64: ")[1].split()[0]
    # Rotated: new checkpoints are signed with the new key; the old one is unknown to it.
    settings.GATEHOUSE_AUDIT_SIGNING_KEY = new_seed
    audit_event_record(action="test.after_rotation", actor=alice)
    assert audit_checkpoint_write() is not None
    report = audit_chain_verify()
    assert not report.ok
    assert (
        "neither the signing key nor one of GATEHOUSE_AUDIT_RETIRED_PUBLIC_KEYS"
        in report.checkpoint_problems[0].reason
    )
    settings.GATEHOUSE_AUDIT_RETIRED_PUBLIC_KEYS = [old_public]
    report = audit_chain_verify()
    assert report.ok, report.checkpoint_problems
    assert report.checkpoints_checked == 2

"""Sealing off the request path: rows are written unsealed and linked into the chain later.

An append takes no lock and gives the row no place in the chain; `audit_seal_pending` (the
background sealer's work, done here on demand) links committed rows in insertion order, one
transaction per batch. What these tests hold it to:
- sealing numbers rows 1, 2, 3... after the head, in insertion order, with the chain's hashes;
- rows not sealed yet are reported by verification, apart from tampering, and do not fail it;
- a sealer that fails mid-batch leaves nothing half-sealed, and the next run seals it all;
- a row changed (or forged) before it is sealed is refused, recorded in the chain, reported;
- a row changed after it is sealed breaks the chain;
- sealers racing each other never fork the chain;
- the background sealer seals within its interval.
"""

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.test.utils import CaptureQueriesContext
from prometheus_client import REGISTRY

from accounts.models import User
from audit import chain, sealing
from audit.digests import audit_row_digest
from audit.models import AuditEvent
from audit.sealer import audit_seal_tick, audit_sealer_ensure, audit_sealer_stop
from audit.sealing import REFUSED_ACTION, audit_chain_head, audit_seal_pending
from audit.selectors import audit_chain_status
from audit.services import audit_event_record, chained_values, pending_values
from audit.subjects import audit_subject_erase
from audit.verification import audit_chain_verify
from tests.audit.sealed import sealed
from tests.audit.tampering import as_database_superuser, sql


def _record(actor: User, count: int, action: str = "test.sealing") -> list[AuditEvent]:
    return [audit_event_record(action=action, actor=actor, metadata={"n": n}) for n in range(count)]


def _refused_total() -> float:
    return REGISTRY.get_sample_value("gatehouse_audit_events_refused_total") or 0.0


def test_an_append_is_unsealed_until_the_sealer_links_it_in_insertion_order(alice: User) -> None:
    sealed()
    head_sequence, head_hash = audit_chain_head()
    events = _record(alice, 5)
    stored = AuditEvent.objects.filter(pk__in=[event.pk for event in events])
    assert set(stored.values_list("sequence", "hash")) == {(None, None)}
    assert all(len(event.row_digest) == 64 for event in stored)

    outcome = audit_seal_pending()

    assert (outcome.sealed, outcome.refused, outcome.busy) == (5, [], False)
    assert outcome.head_sequence == head_sequence + 5
    events = sealed(*events)
    assert [event.sequence for event in events] == list(range(head_sequence + 1, head_sequence + 6))
    previous = head_hash
    for event in events:
        assert event.hash == chain.link_hash(previous, chain.event_canonical(chained_values(event)))
        previous = event.hash
    report = audit_chain_verify()
    assert report.ok, report.as_dict()
    assert (report.head_sequence, report.head_hash) == (head_sequence + 5, previous)
    assert report.pending_events == 0
    assert audit_seal_pending().sealed == 0  # nothing left: a second run is a no-op


def test_rows_not_sealed_yet_are_reported_apart_from_tampering(alice: User) -> None:
    sealed(*_record(alice, 2))
    _record(alice, 3)
    report = audit_chain_verify()
    assert report.ok, report.as_dict()  # waiting is not a problem
    assert report.pending_events == 3
    assert report.pending_oldest_seconds is not None  # how long is the machine's business
    assert report.tampered_pending_count == 0
    assert report.events == AuditEvent.objects.filter(sequence__isnull=False).count()
    status = audit_chain_status()
    assert status["pending_events"] == 3
    assert status["head_sequence"] == report.head_sequence


def test_metrics_show_how_many_rows_wait_and_for_how_long(alice: User) -> None:
    from gatehouse.metrics_export import metrics_registry

    sealed()
    _record(alice, 2)
    samples = {
        sample.name: sample.value
        for family in metrics_registry().collect()
        for sample in family.samples
        if sample.name.startswith("gatehouse_audit_pending")
    }
    assert samples["gatehouse_audit_pending_events"] == 2
    assert "gatehouse_audit_pending_oldest_seconds" in samples


@pytest.mark.django_db(transaction=True)
def test_a_sealer_failing_mid_batch_leaves_nothing_half_sealed(
    alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its own transaction per batch (no outer one here): the rows a batch already updated roll
    back with it, the batch before it stays sealed, and the next run seals the rest."""
    sealed()
    head_sequence, _ = audit_chain_head()
    events = _record(alice, 7)
    real, calls = sealing._chunk_seal, []

    def crash_after_the_first_chunk(chunk: Any) -> int:
        calls.append(len(chunk))
        if len(calls) == 4:  # batch 1: two chunks; batch 2: a chunk written, then the crash
            raise RuntimeError("sealer killed mid-batch")
        return real(chunk)

    monkeypatch.setattr(sealing, "UPDATE_CHUNK", 2)
    monkeypatch.setattr(sealing, "_chunk_seal", crash_after_the_first_chunk)
    with pytest.raises(RuntimeError, match="killed mid-batch"):
        audit_seal_pending(batch_size=4)
    assert calls == [2, 2, 2, 1]
    rows = list(AuditEvent.objects.filter(pk__in=[e.pk for e in events]).order_by("id"))
    sealed_first = list(range(head_sequence + 1, head_sequence + 5))
    assert [row.sequence for row in rows] == [*sealed_first, None, None, None]
    assert rows[4].hash is None  # written by the dead batch's first chunk, rolled back with it
    report = audit_chain_verify()
    assert report.ok, report.as_dict()
    assert report.pending_events == 3

    monkeypatch.setattr(sealing, "_chunk_seal", real)
    assert audit_seal_pending(batch_size=4).sealed == 3
    sequences = list(
        AuditEvent.objects.filter(pk__in=[e.pk for e in events])
        .order_by("id")
        .values_list("sequence", flat=True)
    )
    assert sequences == list(range(head_sequence + 1, head_sequence + 8))
    report = audit_chain_verify()
    assert report.ok, report.as_dict()
    assert report.pending_events == 0


def test_a_row_changed_before_it_is_sealed_is_refused_and_the_chain_says_so(
    alice: User, caplog: pytest.LogCaptureFixture
) -> None:
    sealed()
    head_sequence, _ = audit_chain_head()
    first, tampered, last = _record(alice, 3)
    with as_database_superuser():
        sql("UPDATE audit_auditevent SET outcome = 'denied' WHERE id = %s", [tampered.pk])
    # Caught before the sealer gets there.
    report = audit_chain_verify()
    assert not report.ok
    assert report.first_break is None
    assert report.tampered_pending_count == 1
    assert report.tampered_pending[0].event_id == tampered.pk
    assert "changed before it was sealed" in report.tampered_pending[0].reason
    refused_before = _refused_total()

    outcome = audit_seal_pending()

    assert outcome.refused == [tampered.pk]
    assert outcome.sealed == 2
    assert _refused_total() == refused_before + 1
    assert any(
        record.levelname == "ERROR" and f"event id {tampered.pk}" in record.getMessage()
        for record in caplog.records
    )
    first, tampered, last = sealed(first, tampered, last)
    assert (tampered.sequence, tampered.hash) == (None, None)  # never sealed, kept as evidence
    # In its place, in the chain: the refusal, naming the row.
    refusal = AuditEvent.objects.get(sequence=head_sequence + 2)
    assert refusal.action == REFUSED_ACTION
    assert refusal.outcome == AuditEvent.Outcome.DENIED
    assert (refusal.target_type, refusal.target_id) == ("audit.auditevent", str(tampered.pk))
    assert refusal.metadata["uuid"] == str(tampered.uuid)
    assert (first.sequence, last.sequence) == (head_sequence + 1, head_sequence + 3)
    report = audit_chain_verify()
    assert report.first_break is None  # the chain holds...
    assert not report.ok  # ...and the tampered row is reported every time
    assert report.tampered_pending_count == 1
    assert f"the sealer refused it (event {refusal.sequence})" in report.tampered_pending[0].reason
    # Later seals pass over it: no second refusal, and new rows seal after it.
    (later,) = sealed(audit_event_record(action="test.later", actor=alice))
    assert later.sequence == head_sequence + 4
    assert AuditEvent.objects.filter(action=REFUSED_ACTION).count() == 1


def test_a_row_forged_without_the_key_is_refused(alice: User) -> None:
    """Someone who can insert rows but does not hold SECRET_KEY: a digest under a guessed key,
    or a row that brings its own chain hash, is no digest the sealer accepts."""
    sealed()
    template = audit_event_record(action="test.template", actor=alice)
    forged = []
    for extra in (
        {"row_digest": chain.pending_digest(b"guessed", pending_values(template))},
        {"hash": "f" * 64},
    ):
        row = AuditEvent.objects.get(pk=template.pk)
        row.pk, row.uuid = None, uuid.uuid4()
        row.row_digest = audit_row_digest(pending_values(row))
        for name, value in extra.items():
            setattr(row, name, value)
        row.save(force_insert=True)
        forged.append(row.pk)
    outcome = audit_seal_pending()
    assert sorted(outcome.refused) == sorted(forged)
    assert outcome.sealed == 1
    assert audit_chain_verify().tampered_pending_count == 2


def test_rows_written_under_a_rotated_secret_key_seal_while_it_is_a_fallback(
    alice: User, settings: Any
) -> None:
    old_key = settings.SECRET_KEY
    written = audit_event_record(action="test.before_rotation", actor=alice)
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "a-new-secret-key-" + "x" * 40, [old_key]
    assert audit_chain_verify().tampered_pending_count == 0
    (written,) = sealed(written)
    assert written.sequence is not None
    # Dropped from the fallbacks too soon: such a row is refused, not chained.
    orphan = audit_event_record(action="test.orphan", actor=alice)
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "yet-another-secret-key-" + "y" * 40, []
    assert audit_seal_pending().refused == [orphan.pk]


def test_a_row_changed_after_it_is_sealed_breaks_the_chain(alice: User) -> None:
    events = sealed(*_record(alice, 4))
    with as_database_superuser():
        sql("UPDATE audit_auditevent SET metadata_json = %s WHERE id = %s", ['{"n":9}', events[2].pk])
    report = audit_chain_verify()
    assert not report.ok
    assert report.first_break is not None
    assert report.first_break.sequence == events[2].sequence
    assert report.tampered_pending_count == 0


def test_erasure_reaches_rows_not_sealed_yet_and_they_still_seal(alice: User, bob: User) -> None:
    by_bob = audit_event_record(action="test.by_bob", actor=bob)
    assert audit_subject_erase(user=bob) >= 1
    (by_bob,) = sealed(by_bob)
    assert by_bob.sequence is not None
    assert (by_bob.actor_display, by_bob.actor_id) == ("", None)
    report = audit_chain_verify()
    assert report.ok, report.as_dict()


def test_the_command_seals_and_reports(alice: User, capsys: pytest.CaptureFixture[str]) -> None:
    sealed()
    _record(alice, 2)
    call_command("audit_seal")
    assert "sealed 2 events" in capsys.readouterr().out
    _record(alice, 1)
    call_command("audit_verify", "--no-seal")
    out = capsys.readouterr().out
    assert "1 events not sealed yet" in out
    assert "the audit trail verifies" in out


@pytest.mark.django_db(transaction=True)
def test_concurrent_sealers_and_writers_never_fork_the_chain(alice: User) -> None:
    """Writers append while sealers race each other, waiting for the lock or only trying it; on
    PostgreSQL they really run at once (in the production profile)."""
    writers, each, sealers = 4, 25, 3
    errors: list[BaseException] = []
    writing = threading.Event()

    def write(worker: int) -> None:
        try:
            for n in range(each):
                with transaction.atomic():
                    audit_event_record(action="test.race", actor=alice, metadata={"worker": worker, "n": n})
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            connection.close()

    def seal(wait: bool) -> None:
        try:
            while writing.is_set():
                audit_seal_pending(wait=wait, batch_size=7)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            connection.close()

    writing.set()
    sealing_threads = [threading.Thread(target=seal, args=(n % 2 == 0,)) for n in range(sealers)]
    writing_threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in sealing_threads + writing_threads:
        thread.start()
    for thread in writing_threads:
        thread.join()
    writing.clear()
    for thread in sealing_threads:
        thread.join()
    assert errors == []
    sealed()
    sequences = list(AuditEvent.objects.order_by("sequence").values_list("sequence", flat=True))
    assert sequences == list(range(1, len(sequences) + 1))
    assert AuditEvent.objects.filter(action="test.race", sequence__isnull=False).count() == writers * each
    report = audit_chain_verify()
    assert report.ok, report.as_dict()
    assert report.pending_events == 0


@pytest.mark.django_db(transaction=True)
def test_a_sealer_that_only_tries_leaves_the_work_to_the_lock_holder(alice: User) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("SQLite's write lock admits one sealer at a time without an advisory lock")
    sealed()
    audit_event_record(action="test.waiting", actor=alice)
    held, release, outcome = threading.Event(), threading.Event(), {}

    def hold_the_lock() -> None:
        try:
            with transaction.atomic():
                sql("SELECT pg_advisory_xact_lock(%s)", [sealing.CHAIN_LOCK])
                held.set()
                release.wait(10)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    try:
        assert held.wait(10)
        outcome["tried"] = audit_seal_pending(wait=False)
    finally:
        release.set()
        holder.join()
    assert outcome["tried"].busy
    assert outcome["tried"].sealed == 0
    assert audit_seal_pending(wait=False).sealed == 1


@pytest.fixture
def background_sealer(settings: Any, transactional_db: None) -> Iterator[None]:
    settings.GATEHOUSE_AUDIT_SEAL_INTERVAL = 0.05
    yield
    audit_sealer_stop()


def test_the_background_sealer_seals_within_its_interval(alice: User, background_sealer: None) -> None:
    event = audit_event_record(action="test.background", actor=alice)  # starts this process's sealer
    deadline = time.monotonic() + 10
    while AuditEvent.objects.filter(pk=event.pk, sequence__isnull=True).exists():
        assert time.monotonic() < deadline, "the background sealer did not seal within 10 s"
        time.sleep(0.02)
    audit_sealer_stop()
    report = audit_chain_verify()
    assert report.ok, report.as_dict()
    assert report.pending_events == 0


def test_a_background_look_on_postgresql_seals_in_one_transaction_without_asking_first(
    alice: User, transactional_db: None
) -> None:
    # A look that first asked whether anything waits cost a second transaction whenever rows
    # were pending, as they always are under load (mutation: the probe back: its query shows).
    if connection.vendor != "postgresql":
        pytest.skip("on SQLite the look asks first, to take the write lock only when needed")
    # Another process's sealer (the suite's Celery worker runs one) may hold the lock at the
    # moment of a look; that look finds it busy and the next seals, so look until sealed.
    events = _record(alice, 3)
    pending = AuditEvent.objects.filter(pk__in=[event.pk for event in events], sequence__isnull=True)
    deadline = time.monotonic() + 10
    while True:
        with CaptureQueriesContext(connection) as captured:
            audit_seal_tick()
        statements = [query["sql"] for query in captured.captured_queries]
        assert not any("sequence IS NULL LIMIT 1" in statement for statement in statements), statements
        locks = [
            statement for statement in statements if statement.startswith("SELECT pg_try_advisory_xact_lock")
        ]
        assert len(locks) == 1, statements
        if not pending.exists():
            break
        assert time.monotonic() < deadline, "no look sealed the pending rows within 10 s"
        time.sleep(0.05)


def test_each_look_that_opens_a_transaction_is_counted(alice: User) -> None:
    # What the sealer costs the database, told apart from what requests cost it (the bench's P9
    # takes these looks off its count). PostgreSQL looks in a transaction every time; SQLite
    # only when rows wait (mutation: count every look, or none, and one of these fails).
    def looks() -> float:
        return REGISTRY.get_sample_value("gatehouse_audit_sealer_looks_total") or 0.0

    audit_seal_pending()
    before = looks()
    audit_seal_tick()  # nothing waits
    idle = looks() - before
    _record(alice, 2)
    audit_seal_tick()  # two rows wait
    busy = looks() - before - idle
    assert (idle, busy) == ((1.0, 1.0) if connection.vendor == "postgresql" else (0.0, 1.0))


def test_the_background_sealer_is_off_with_no_interval(alice: User, settings: Any) -> None:
    settings.GATEHOUSE_AUDIT_SEAL_INTERVAL = 0
    audit_sealer_ensure()
    assert not any(thread.name == "audit-sealer" for thread in threading.enumerate())


def test_a_seal_is_refused_by_the_triggers_unless_it_is_exactly_a_seal(alice: User) -> None:
    """The statement the sealer runs, aimed at a row already sealed: matched by nothing, so the
    batch would roll back (SealConflict), and forced past that guard, refused by the trigger."""
    (event,) = sealed(audit_event_record(action="test.once", actor=alice))
    with pytest.raises(sealing.SealConflict), transaction.atomic():
        sealing.rows_seal([(event.pk, (event.sequence or 0) + 100, "0" * 64)])
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        sql(
            "UPDATE audit_auditevent SET sequence = sequence + 100, hash = %s WHERE id = %s",
            ["0" * 64, event.pk],
        )

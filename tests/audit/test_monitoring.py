"""What /metrics says about data-protection requests and about the trail's verification runs,
read from the database at scrape time: it follows the requests as they are asked, finish, fail,
are asked again and pass their deadline, and the runs as they pass, fail or cannot finish,
wherever they ran (the command, beat's task, the auditor API).
"""

import io
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError
from django.utils import timezone
from prometheus_client import generate_latest

from accounts.models import User
from audit import tasks, verification
from audit.compliance import (
    compliance_erasure_request,
    compliance_export_request,
    compliance_export_run,
)
from audit.compliance.requests import compliance_request_fail
from audit.models import AuditEvent, ErasureRequest, ExportRequest, VerificationRun
from audit.selectors import compliance_request_figures
from audit.services import audit_event_record
from gatehouse.metrics_export import metrics_registry
from tests.accounts.helpers import bearer_client, login
from tests.audit.sealed import sealed
from tests.audit.tampering import as_database_superuser, sql
from tests.prometheus_text import Samples, metric_samples

STATUSES = ("pending", "running", "done", "failed")


def _scrape() -> Samples:
    return metric_samples(generate_latest(metrics_registry()).decode())


def _requests(samples: Samples, kind: str) -> dict[str, float]:
    return {
        status: samples[("gatehouse_compliance_requests", frozenset({("kind", kind), ("status", status)}))]
        for status in STATUSES
    }


def _by_kind(samples: Samples, name: str, kind: str) -> float:
    return samples[(name, frozenset({("kind", kind)}))]


def _export(subject: User, requested_by: User, capture: Any) -> ExportRequest:
    with capture(execute=False):  # the worker's task is run by hand, below
        return compliance_export_request(subject=subject, requested_by=requested_by)


# --- data-protection requests --------------------------------------------------------------------


def test_no_request_yet_is_every_kind_and_status_at_zero(db: None) -> None:
    samples = _scrape()
    for kind in ("export", "erasure"):
        assert _requests(samples, kind) == dict.fromkeys(STATUSES, 0)
        assert _by_kind(samples, "gatehouse_compliance_requests_overdue", kind) == 0
        assert _by_kind(samples, "gatehouse_compliance_requests_failed_unresolved", kind) == 0
        assert _by_kind(samples, "gatehouse_compliance_open_oldest_seconds", kind) == 0


def test_requests_are_counted_by_kind_and_status_as_they_are_asked_and_done(
    bob: User, olga: User, django_capture_on_commit_callbacks: Any
) -> None:
    export = _export(bob, bob, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=False):
        compliance_erasure_request(subject=olga, requested_by=olga)
    samples = _scrape()
    assert _requests(samples, "export") == {"pending": 1, "running": 0, "done": 0, "failed": 0}
    assert _requests(samples, "erasure") == {"pending": 1, "running": 0, "done": 0, "failed": 0}
    assert _by_kind(samples, "gatehouse_compliance_open_oldest_seconds", "export") != 0

    compliance_export_run(export_id=str(export.pk))
    samples = _scrape()
    assert _requests(samples, "export") == {"pending": 0, "running": 0, "done": 1, "failed": 0}
    assert _by_kind(samples, "gatehouse_compliance_open_oldest_seconds", "export") == 0
    assert _requests(samples, "erasure")["pending"] == 1


def test_the_oldest_open_request_is_aged_from_when_it_was_asked(
    bob: User, olga: User, django_capture_on_commit_callbacks: Any
) -> None:
    now = timezone.now()
    older = _export(bob, bob, django_capture_on_commit_callbacks)
    newer = _export(olga, olga, django_capture_on_commit_callbacks)
    ExportRequest.objects.filter(pk=older.pk).update(created_at=now - timedelta(hours=5))
    ExportRequest.objects.filter(pk=newer.pk).update(
        created_at=now - timedelta(hours=1), status=ExportRequest.Status.RUNNING
    )
    figures = compliance_request_figures(now=now)
    assert figures["export"].open_oldest_seconds == 5 * 3600
    ExportRequest.objects.filter(pk=older.pk).update(status=ExportRequest.Status.DONE)
    # A running request is still open: it has not been answered.
    assert compliance_request_figures(now=now)["export"].open_oldest_seconds == 3600
    assert compliance_request_figures(now=now)["erasure"].open_oldest_seconds == 0


def test_an_open_request_past_its_deadline_is_overdue_until_it_is_done(
    bob: User, django_capture_on_commit_callbacks: Any
) -> None:
    export = _export(bob, bob, django_capture_on_commit_callbacks)
    assert _by_kind(_scrape(), "gatehouse_compliance_requests_overdue", "export") == 0
    ExportRequest.objects.filter(pk=export.pk).update(due_at=timezone.now() - timedelta(minutes=1))
    samples = _scrape()
    assert _by_kind(samples, "gatehouse_compliance_requests_overdue", "export") == 1
    assert _by_kind(samples, "gatehouse_compliance_requests_overdue", "erasure") == 0
    # Running is not answered either.
    ExportRequest.objects.filter(pk=export.pk).update(status=ExportRequest.Status.RUNNING)
    assert _by_kind(_scrape(), "gatehouse_compliance_requests_overdue", "export") == 1
    ExportRequest.objects.filter(pk=export.pk).update(status=ExportRequest.Status.PENDING)
    compliance_export_run(export_id=str(export.pk))  # done late: answered all the same
    assert _by_kind(_scrape(), "gatehouse_compliance_requests_overdue", "export") == 0


def test_a_failed_request_counts_until_it_is_asked_again(
    bob: User, olga: User, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=False):
        erasure = compliance_erasure_request(subject=bob, requested_by=olga)
    compliance_request_fail(request=erasure, error="the disk was full")
    samples = _scrape()
    assert _requests(samples, "erasure") == {"pending": 0, "running": 0, "done": 0, "failed": 1}
    assert _by_kind(samples, "gatehouse_compliance_requests_failed_unresolved", "erasure") == 1
    assert _by_kind(samples, "gatehouse_compliance_requests_failed_unresolved", "export") == 0
    # Not due yet: failed, not overdue. Past its deadline, unanswered: overdue too.
    assert _by_kind(samples, "gatehouse_compliance_requests_overdue", "erasure") == 0
    ErasureRequest.objects.filter(pk=erasure.pk).update(due_at=timezone.now() - timedelta(days=1))
    assert _by_kind(_scrape(), "gatehouse_compliance_requests_overdue", "erasure") == 1

    # Asked again for the same person: the failure is answered by the new request.
    with django_capture_on_commit_callbacks(execute=False):
        compliance_erasure_request(subject=bob, requested_by=olga)
    samples = _scrape()
    assert _requests(samples, "erasure") == {"pending": 1, "running": 0, "done": 0, "failed": 1}
    assert _by_kind(samples, "gatehouse_compliance_requests_failed_unresolved", "erasure") == 0
    assert _by_kind(samples, "gatehouse_compliance_requests_overdue", "erasure") == 0


def test_a_failure_for_someone_else_or_of_another_kind_is_not_an_answer(
    bob: User, olga: User, django_capture_on_commit_callbacks: Any
) -> None:
    export = _export(bob, bob, django_capture_on_commit_callbacks)
    compliance_request_fail(request=export, error="boom")
    _export(olga, olga, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=False):
        compliance_erasure_request(subject=bob, requested_by=olga)
    assert _by_kind(_scrape(), "gatehouse_compliance_requests_failed_unresolved", "export") == 1


def test_a_failed_request_whose_person_is_gone_has_nobody_to_answer(
    olga: User, django_capture_on_commit_callbacks: Any
) -> None:
    gone = User.objects.create_user(username="gone", password="x" * 20)
    export = _export(gone, olga, django_capture_on_commit_callbacks)
    compliance_request_fail(request=export, error="boom")
    assert _by_kind(_scrape(), "gatehouse_compliance_requests_failed_unresolved", "export") == 1
    gone.delete()
    samples = _scrape()
    assert _by_kind(samples, "gatehouse_compliance_requests_failed_unresolved", "export") == 0
    assert _requests(samples, "export")["failed"] == 1


# --- verification runs -----------------------------------------------------------------------------


def _runs(samples: Samples) -> dict[str, float]:
    return {
        result: samples[("gatehouse_audit_verify_runs_total", frozenset({("result", result)}))]
        for result in ("passed", "failed", "error")
    }


def _gauge(samples: Samples, name: str) -> float | None:
    return samples.get((name, frozenset()))


def test_before_any_verification_only_the_counts_and_the_interval_are_exported(
    db: None, settings: Any
) -> None:
    samples = _scrape()
    assert _runs(samples) == {"passed": 0, "failed": 0, "error": 0}
    interval = settings.CELERY_BEAT_SCHEDULE["audit-verify"]["schedule"].total_seconds()
    assert _gauge(samples, "gatehouse_audit_verify_interval_seconds") == interval
    assert _gauge(samples, "gatehouse_audit_verify_last_run_timestamp_seconds") is None
    assert _gauge(samples, "gatehouse_audit_verify_last_passed") is None
    assert _gauge(samples, "gatehouse_audit_verify_last_success_timestamp_seconds") is None


def test_verification_runs_are_exported_as_they_pass_and_fail(alice: User) -> None:
    events = [audit_event_record(action="test.monitored", actor=alice) for _ in range(3)]
    call_command("audit_verify", stdout=io.StringIO())
    passed = VerificationRun.objects.get()
    assert (passed.result, passed.source, passed.personal) == ("passed", "command", True)
    assert passed.events == passed.head_sequence == AuditEvent.objects.filter(sequence__isnull=False).count()
    samples = _scrape()
    assert _runs(samples) == {"passed": 1, "failed": 0, "error": 0}
    assert _gauge(samples, "gatehouse_audit_verify_last_passed") == 1
    assert (
        _gauge(samples, "gatehouse_audit_verify_last_run_timestamp_seconds") == passed.finished_at.timestamp()
    )
    assert (
        _gauge(samples, "gatehouse_audit_verify_last_success_timestamp_seconds")
        == passed.finished_at.timestamp()
    )

    events = sealed(*events)
    with as_database_superuser():
        sql("UPDATE audit_auditevent SET outcome = 'failure' WHERE id = %s", [events[1].pk])
    with pytest.raises(CommandError):
        call_command("audit_verify", "--skip-personal", stdout=io.StringIO())
    failed = VerificationRun.objects.exclude(pk=passed.pk).get()
    assert (failed.result, failed.personal) == ("failed", False)
    assert f"event {events[1].sequence}" in failed.detail
    samples = _scrape()
    assert _runs(samples) == {"passed": 1, "failed": 1, "error": 0}
    assert _gauge(samples, "gatehouse_audit_verify_last_passed") == 0
    assert (
        _gauge(samples, "gatehouse_audit_verify_last_run_timestamp_seconds") == failed.finished_at.timestamp()
    )
    # The last pass is still the earlier one.
    assert (
        _gauge(samples, "gatehouse_audit_verify_last_success_timestamp_seconds")
        == passed.finished_at.timestamp()
    )


def test_a_run_that_cannot_finish_is_counted_but_checks_nothing(
    alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    call_command("audit_verify", stdout=io.StringIO())
    passed = VerificationRun.objects.get()

    def unreadable(**kwargs: Any) -> verification.VerificationReport:
        raise OSError("the checkpoint sink is not mounted")

    monkeypatch.setattr(verification, "audit_chain_verify", unreadable)
    with pytest.raises(OSError, match="not mounted"):
        call_command("audit_verify")
    error = VerificationRun.objects.exclude(pk=passed.pk).get()
    assert error.result == "error"
    assert "not mounted" in error.detail
    samples = _scrape()
    assert _runs(samples) == {"passed": 1, "failed": 0, "error": 1}
    # The last run that checked the trail is still the pass: an error neither passes nor fails it,
    # and leaves the verification to grow stale.
    assert _gauge(samples, "gatehouse_audit_verify_last_passed") == 1
    assert (
        _gauge(samples, "gatehouse_audit_verify_last_run_timestamp_seconds") == passed.finished_at.timestamp()
    )


def test_a_database_that_refuses_the_record_does_not_fail_the_verification(
    alice: User, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refused(**kwargs: Any) -> VerificationRun:
        raise DatabaseError("permission denied for table audit_verificationrun")

    monkeypatch.setattr(VerificationRun.objects, "create", refused)
    out = io.StringIO()
    call_command("audit_verify", stdout=out)
    assert "the audit trail verifies" in out.getvalue()
    assert "could not record an audit verification run" in caplog.text
    monkeypatch.undo()
    assert not VerificationRun.objects.exists()


def test_beats_task_and_the_auditor_api_record_their_runs_too(alice: User, carol: User) -> None:
    audit_event_record(action="test.monitored", actor=alice)
    assert tasks.audit_verify() is True
    assert bearer_client(login(carol).access).get("/api/audit/verify/").json()["ok"] is True
    runs = VerificationRun.objects.order_by("finished_at")
    assert [(run.source, run.result) for run in runs] == [("schedule", "passed"), ("api", "passed")]
    assert _runs(_scrape())["passed"] == 2


def test_beat_runs_the_verification_task(settings: Any) -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["audit-verify"]
    assert entry["task"] == tasks.audit_verify.name
    assert entry["schedule"] == timedelta(hours=24)

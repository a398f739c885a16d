"""Runs of the whole trail's verification (`audit.verification.audit_verify_run`): when each
ended, where it came from, and whether the trail verified.

A table, not a counter in the process that verified: verification runs in `manage.py
audit_verify` (a one-off process, a Job or a shell, gone before Prometheus could scrape it), in
beat's daily task on a Celery worker (whose counters die with it, and which may not be scraped)
and in the auditor API's view on one web pod of many. A row outlives all of them: every web pod
reads the same figures from here when scraped (`gatehouse.metrics_export`), so the alerts see a
failed run wherever it happened and whenever the process that ran it ended. One small row per
run, which is also the history of verification an auditor may ask for. Nothing personal is
kept: a problem is named by its event's sequence number, never by whom it is about.
"""

from django.db import models


class VerificationRun(models.Model):
    class Result(models.TextChoices):
        PASSED = "passed", "Passed"
        # It walked the whole trail and found a problem: a broken link, a checkpoint the trail
        # no longer holds, altered personal details, a tampered row awaiting its seal.
        FAILED = "failed", "Failed"
        # It could not finish (the database, the checkpoint sink): the trail was not checked.
        ERROR = "error", "Error"

    class Source(models.TextChoices):
        COMMAND = "command", "manage.py audit_verify"
        SCHEDULE = "schedule", "beat's audit-verify"
        API = "api", "the auditor API"

    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(db_index=True)
    result = models.CharField(max_length=8, choices=Result.choices)
    source = models.CharField(max_length=16, choices=Source.choices)
    # Whether personal details were checked too (`audit_verify --skip-personal` leaves them).
    personal = models.BooleanField(default=True)
    events = models.PositiveBigIntegerField(default=0)
    head_sequence = models.PositiveBigIntegerField(default=0)
    seconds = models.FloatField(default=0.0)
    # The first problem found, or the error that stopped the run; empty when it passed.
    detail = models.TextField(blank=True)

    class Meta:
        ordering = ["-finished_at"]

    def __str__(self) -> str:
        return f"verification {self.result} at {self.finished_at.isoformat()} ({self.source})"

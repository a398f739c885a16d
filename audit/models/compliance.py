"""Data-protection requests: exports (GDPR Art. 15 and 20) and erasures (Art. 17).

Each is a row that a Celery task works through, `pending → running → done / failed`, with a
legal deadline a month after it was asked. Requests name people by pseudonym as well as by a
live link, so that an erasure's evidence outlives the person it erased.
"""

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


class ComplianceRequest(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    subject = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    subject_pseudonym = models.UUIDField()
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    requested_by_pseudonym = models.UUIDField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    # Percent done, for people watching the queue.
    progress = models.PositiveSmallIntegerField(default=0)
    # How many times a worker has taken it up; the sweeper gives up past a limit.
    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    # The legal deadline (GDPR Art. 12(3): one month).
    due_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    # Touched as work advances; a running request whose heartbeat stops is re-queued.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        abstract = True
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self._meta.verbose_name} {str(self.id)[:8]} ({self.status})"

    @property
    def overdue(self) -> bool:
        return self.status not in (self.Status.DONE,) and timezone.now() > self.due_at


class ExportRequest(ComplianceRequest):
    """A copy of everything Gatehouse holds about one person, as a signed zip."""

    # Relative to GATEHOUSE_COMPLIANCE_EXPORT_DIR; empty until built, and again once expired.
    file_name = models.CharField(max_length=200, blank=True)
    file_sha256 = models.CharField(max_length=64, blank=True)
    file_bytes = models.PositiveBigIntegerField(null=True, blank=True)
    # The download link works until then; the file is deleted after.
    download_expires_at = models.DateTimeField(null=True, blank=True)
    downloads = models.PositiveIntegerField(default=0)

    class Meta(ComplianceRequest.Meta):
        verbose_name = "data export request"


class ErasureRequest(ComplianceRequest):
    """Erasure of one person: what was deleted, revoked and pseudonymised is kept as evidence."""

    evidence = models.JSONField(default=dict, blank=True)

    class Meta(ComplianceRequest.Meta):
        verbose_name = "erasure request"

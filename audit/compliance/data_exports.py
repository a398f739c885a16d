"""Data exports: asked for, built by a worker into a signed zip, downloaded, expired."""

import functools
import hashlib
import json
import logging
import time
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from audit.checkpoints import key_id, public_key_raw, sign, signing_key
from audit.compliance.export_sections import SECTIONS, export_sections
from audit.compliance.requests import (
    compliance_officer_is,
    compliance_request_claim,
    compliance_request_fail,
    compliance_request_open,
    compliance_request_progress,
)
from audit.models import AuditEvent, ExportRequest
from audit.services import audit_event_record
from encryption.files import SealedFileWriter, sealed_file_open
from encryption.reencryption import SealedFile

logger = logging.getLogger(__name__)
_OPEN = (ExportRequest.Status.PENDING, ExportRequest.Status.RUNNING)


class ExportUnavailable(Exception):
    """The caller may not have this export, or it cannot be had now; `status` says which."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@transaction.atomic
def compliance_export_request(*, subject: User, requested_by: User) -> ExportRequest:
    """Ask for an export of `subject`'s data; the caller must be them or a compliance officer.

    One export per person per `GATEHOUSE_COMPLIANCE_EXPORT_COOLDOWN_SECONDS`: while the last is
    under way, or was done within that time, the refusal names it (it can still be downloaded)
    and when a new one may be asked for. Each export is a full zip kept for days; asking again
    at once would only build the same one again.
    """
    return compliance_request_open(
        model=ExportRequest,
        subject=subject,
        requested_by=requested_by,
        what="an export",
        cooldown=timedelta(seconds=settings.GATEHOUSE_COMPLIANCE_EXPORT_COOLDOWN_SECONDS),
    )


def _directory() -> Path:
    directory = Path(settings.GATEHOUSE_COMPLIANCE_EXPORT_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def export_file_purpose(*, export_id: object) -> str:
    """What an export's file is sealed for: a file moved to another export does not decrypt."""
    return f"compliance.export:{export_id}"


def export_files_sealed() -> Iterator[SealedFile]:
    """Every export file on disk, for the re-encryption after a key rotation."""
    for export_id, file_name in ExportRequest.objects.exclude(file_name="").values_list("pk", "file_name"):
        yield SealedFile(
            path=_directory() / file_name,
            purpose=export_file_purpose(export_id=export_id),
            wanted=functools.partial(_export_file_kept, export_id=export_id, file_name=file_name),
        )


def _export_file_kept(*, export_id: uuid.UUID, file_name: str) -> bool:
    return ExportRequest.objects.filter(pk=export_id, file_name=file_name).exists()


def _write_zip(export: ExportRequest, user: User) -> tuple[str, str, int, dict[str, str]]:
    """Build the zip, sealed, beside its final name and rename it into place.

    The zip is encrypted as it is written (no plain copy ever reaches the disk); a crash leaves
    no half file under the final name. The digest and size are those of the plain zip, which is
    what the person downloads.
    """
    name = f"export-{export.pk}.zip"
    partial = _directory() / f".{name}.partial"
    digests: dict[str, str] = {}
    pause = settings.GATEHOUSE_COMPLIANCE_SECTION_PAUSE_SECONDS
    sealed = SealedFileWriter(path=partial, purpose=export_file_purpose(export_id=export.pk))
    with sealed, zipfile.ZipFile(sealed, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for done, (section, body) in enumerate(
            export_sections(user=user, pseudonym=str(export.subject_pseudonym)), start=1
        ):
            archive.writestr(section, body)
            digests[section] = hashlib.sha256(body).hexdigest()
            compliance_request_progress(request=export, progress=int(done * 90 / len(SECTIONS)))
            if pause:
                time.sleep(pause)
        key = signing_key().public_key()
        manifest = json.dumps(
            {
                "request": str(export.pk),
                "subject": str(export.subject_pseudonym),
                "created_at": timezone.now().isoformat(),
                "files": digests,
                "key_id": key_id(key),
                "public_key": public_key_raw(key).hex(),
            },
            indent=2,
            sort_keys=True,
        ).encode()
        archive.writestr("manifest.json", manifest)
        archive.writestr("manifest.sig", sign(manifest) + "\n")
    partial.replace(_directory() / name)
    return name, sealed.sha256, sealed.size, digests


def compliance_export_run(*, export_id: str) -> None:
    """The worker's part: build the zip and mark the request done. Safe to run twice."""
    export = compliance_request_claim(model=ExportRequest, request_id=export_id)
    if export is None:
        return
    user = User.objects.filter(pk=export.subject_id).first() if export.subject_id else None
    if user is None:
        compliance_request_fail(request=export, error="the subject no longer exists (erased?)")
        return
    try:
        name, digest, size, files = _write_zip(export, user)
    except Exception as error:
        logger.exception("export %s failed", export.pk)
        compliance_request_fail(request=export, error=f"{type(error).__name__}: {error}")
        return
    with transaction.atomic():
        now = timezone.now()
        export.status = ExportRequest.Status.DONE
        export.progress = 100
        export.file_name, export.file_sha256, export.file_bytes = name, digest, size
        export.finished_at = now
        export.download_expires_at = now + timedelta(hours=settings.GATEHOUSE_COMPLIANCE_DOWNLOAD_HOURS)
        export.save()
        audit_event_record(
            action="compliance.export.completed",
            actor_kind=AuditEvent.ActorKind.SYSTEM,
            actor_display="system",
            target=user,
            metadata={"request": str(export.pk), "sha256": digest, "bytes": size, "files": sorted(files)},
        )


def compliance_export_visible(*, export: ExportRequest, user: User) -> bool:
    """The subject and compliance officers may see (and download) an export; nobody else."""
    return export.subject_id == user.pk or compliance_officer_is(user=user)


@dataclass(frozen=True)
class ExportDownload:
    """The plain zip, decrypted as it is read, and its size (the file on disk is larger)."""

    file: IO[bytes]
    filename: str
    size: int | None


def compliance_export_download(*, export_id: str, user: User) -> ExportDownload:
    """Open a finished export for `user`. Every attempt is audited, refused ones included.

    Someone who may not see it is told it does not exist (404), as for any object.
    """
    export = ExportRequest.objects.filter(pk=export_id).first()
    if export is None or not compliance_export_visible(export=export, user=user):
        audit_event_record(
            action="compliance.export.download_refused",
            actor=user,
            outcome=AuditEvent.Outcome.DENIED,
            target_type="audit.exportrequest",
            target_id=export_id,
            metadata={"reason": "not found or not theirs"},
        )
        raise ExportUnavailable("No such export.", status=404)
    if export.status != ExportRequest.Status.DONE:
        raise ExportUnavailable(f"The export is {export.status}; it can be downloaded once done.", status=409)
    expired = export.download_expires_at is not None and export.download_expires_at < timezone.now()
    if not export.file_name or expired or not (_directory() / export.file_name).is_file():
        raise ExportUnavailable("This export's download link has expired; ask for a new export.", status=410)
    with transaction.atomic():
        ExportRequest.objects.filter(pk=export.pk).update(downloads=export.downloads + 1)
        audit_event_record(
            action="compliance.export.downloaded",
            actor=user,
            target_type="audit.exportrequest",
            target_id=str(export.pk),
            metadata={"subject": str(export.subject_pseudonym), "sha256": export.file_sha256},
        )
    handle = sealed_file_open(
        path=_directory() / export.file_name, purpose=export_file_purpose(export_id=export.pk)
    )
    return ExportDownload(
        file=handle, filename=f"gatehouse-export-{str(export.pk)[:8]}.zip", size=export.file_bytes
    )


def export_file_delete(*, export: ExportRequest) -> None:
    if export.file_name:
        (_directory() / export.file_name).unlink(missing_ok=True)


def compliance_exports_expire(*, now: datetime | None = None) -> int:
    """Delete the files of exports past their download time; returns how many."""
    now = now or timezone.now()
    expired = 0
    for export in ExportRequest.objects.filter(download_expires_at__lt=now).exclude(file_name=""):
        with transaction.atomic():
            export_file_delete(export=export)
            ExportRequest.objects.filter(pk=export.pk).update(file_name="")
            audit_event_record(
                action="compliance.export.expired",
                actor_kind=AuditEvent.ActorKind.SYSTEM,
                actor_display="system",
                target_type="audit.exportrequest",
                target_id=str(export.pk),
                metadata={"downloads": export.downloads},
            )
            expired += 1
    export_files_orphaned_delete(now=now)
    return expired


# A file younger than this may be a build whose row is not saved yet.
_ORPHAN_GRACE = timedelta(hours=1)


def export_files_orphaned_delete(*, now: datetime | None = None) -> int:
    """Delete export files no request names (left by a race with an erasure); returns how many.

    Such a file is sealed, but it is still a copy of someone's data that nothing would ever
    delete. Files younger than an hour are left: a build renames its file into place before it
    saves the request that names it.
    """
    now = now or timezone.now()
    named = set(ExportRequest.objects.exclude(file_name="").values_list("file_name", flat=True))
    deleted = 0
    for path in _directory().glob("export-*.zip"):
        modified = datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
        if path.name not in named and now - modified > _ORPHAN_GRACE:
            path.unlink(missing_ok=True)
            deleted += 1
    if deleted:
        logger.warning("deleted %d export files no request named", deleted)
    return deleted

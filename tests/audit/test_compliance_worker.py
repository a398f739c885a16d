"""Compliance requests on a real worker: queued on commit, and surviving a worker killed mid-task.

In the production profile a Celery worker process does the work; in the embedded default the
task runs in-process when the request commits. The kill test needs a process to kill, so it
runs in the production profile only, on a worker and queue of its own.
"""

import io
import json
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.conf import settings
from django.test import override_settings

from accounts.models import User
from audit.compliance import compliance_requests_sweep
from audit.compliance.data_exports import compliance_export_request, export_file_purpose
from audit.models import AuditEvent, ExportRequest
from encryption.files import sealed_file_open
from tests.accounts.helpers import bearer_client, login
from tests.celery_worker import CeleryWorker, database_url
from tests.conftest import audit_signing_key_file
from tests.profile import PRODUCTION
from tests.waiting import eventually

pytestmark = pytest.mark.django_db(transaction=True)

MORTAL_QUEUE = "compliance.mortal"


def _export_done(export_id: str) -> ExportRequest | None:
    return ExportRequest.objects.filter(pk=export_id, status=ExportRequest.Status.DONE).first()


async def test_an_export_asked_over_the_api_is_built_by_the_worker(
    bob: User, celery_worker: CeleryWorker | None
) -> None:
    client = bearer_client((await database_sync_to_async(login)(bob)).access)
    created = await database_sync_to_async(client.post)(
        "/api/compliance/exports/", format="json", HTTP_X_REQUEST_ID="trace-export-1"
    )
    assert created.status_code == 202
    done = await eventually(lambda: _export_done(created.json()["id"]), seconds=60)
    assert done.attempts == 1
    # The request's id followed it into the worker (a message header): its events carry it.
    completed = await AuditEvent.objects.aget(action="compliance.export.completed")
    assert completed.request_id == "trace-export-1"
    response = await database_sync_to_async(client.get)(f"/api/compliance/exports/{done.pk}/download/")
    assert response.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert json.loads(archive.read("profile.json"))["username"] == "bob"


@pytest.fixture
def mortal_worker_env(
    tmp_path_factory: pytest.TempPathFactory, compliance_export_dir: Path
) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url(settings.DATABASES["default"]),
        "REDIS_URL": settings.REDIS_URL,
        "GATEHOUSE_COMPLIANCE_EXPORT_DIR": str(compliance_export_dir),
        "GATEHOUSE_AUDIT_SIGNING_KEY_FILE": str(audit_signing_key_file(tmp_path_factory)),
        "GATEHOUSE_COMPLIANCE_QUEUE": MORTAL_QUEUE,
    }


def _worker(env: dict[str, str], log: Path, name: str) -> CeleryWorker:
    worker = CeleryWorker(env=env, log_path=log, queues=MORTAL_QUEUE, name=name)
    worker.start()
    return worker


@pytest.fixture
def workers() -> Iterator[list[CeleryWorker]]:
    started: list[CeleryWorker] = []
    yield started
    for worker in started:
        worker.stop()


# Part of the reliability suite (`make test-reliability`): a worker SIGKILLed mid-export.
@pytest.mark.reliability
@pytest.mark.skipif(not PRODUCTION, reason="kills a Celery worker process (production profile)")
@override_settings(GATEHOUSE_COMPLIANCE_QUEUE=MORTAL_QUEUE, GATEHOUSE_COMPLIANCE_STALE_SECONDS=2)
async def test_an_export_survives_its_worker_killed_mid_task(
    bob: User, mortal_worker_env: dict[str, str], workers: list[CeleryWorker], tmp_path: Path
) -> None:
    # Slow sections, so the kill lands mid-way.
    slow = {**mortal_worker_env, "GATEHOUSE_COMPLIANCE_SECTION_PAUSE_SECONDS": "1.5"}
    workers.append(await database_sync_to_async(_worker)(slow, tmp_path / "doomed.log", "doomed"))
    export = await database_sync_to_async(compliance_export_request)(subject=bob, requested_by=bob)

    def half_way() -> ExportRequest | None:
        return ExportRequest.objects.filter(pk=export.pk, status="running", progress__gt=0).first()

    await eventually(half_way, seconds=60)
    process = workers[0].process
    assert process is not None
    process.kill()
    process.wait(timeout=10)
    lost = await database_sync_to_async(ExportRequest.objects.get)(pk=export.pk)
    assert (lost.status, lost.attempts) == ("running", 1)
    assert lost.progress < 100

    # Its heartbeat goes stale; the sweeper (beat's task) hands it to the next worker.
    await eventually(_stale_and_swept, seconds=15)
    workers.append(await database_sync_to_async(_worker)(mortal_worker_env, tmp_path / "next.log", "next"))
    done = await eventually(lambda: _export_done(str(export.pk)), seconds=60)
    assert done.attempts == 2
    assert await database_sync_to_async(
        AuditEvent.objects.filter(
            action="compliance.export.requeued", metadata_json__contains=str(export.pk)
        ).exists
    )()
    files, partials = await database_sync_to_async(_built)(done)
    assert files >= {"profile.json", "conversations.json", "audit_events.jsonl"}
    assert partials == []  # the killed worker's half-built zip was replaced, not left beside


def _built(export: ExportRequest) -> tuple[set[str], list[Path]]:
    directory = Path(settings.GATEHOUSE_COMPLIANCE_EXPORT_DIR)
    # The file on disk is sealed (encryption at rest): read the zip through it.
    with sealed_file_open(
        path=directory / export.file_name, purpose=export_file_purpose(export_id=export.pk)
    ) as f:
        manifest = json.loads(zipfile.ZipFile(io.BytesIO(f.read())).read("manifest.json"))
    return set(manifest["files"]), list(directory.glob(f".export-{export.pk}.zip.partial"))


def _stale_and_swept() -> Any:
    return compliance_requests_sweep() or None

"""The officers' console: the request queue with deadlines, adding requests, downloading."""

from typing import Any

from django.test import Client

from accounts.models import User
from audit.compliance import compliance_export_run
from audit.models import AuditEvent, ErasureRequest, ExportRequest


def _officer_client(olga: User) -> Client:
    client = Client()
    client.force_login(olga)
    return client


def test_an_officer_adds_an_export_and_sees_it_in_the_queue(
    olga: User, bob: User, django_capture_on_commit_callbacks: Any
) -> None:
    client = _officer_client(olga)
    with django_capture_on_commit_callbacks(execute=False):
        added = client.post("/admin/audit/exportrequest/add/", {"person": bob.pk})
    assert added.status_code == 302, added.content[:800]
    export = ExportRequest.objects.get(subject=bob)
    assert export.requested_by == olga
    assert AuditEvent.objects.filter(action="compliance.export.requested", actor_display="olga").exists()
    compliance_export_run(export_id=str(export.pk))
    queue = client.get("/admin/audit/exportrequest/")
    assert queue.status_code == 200
    page = queue.content.decode()
    assert "bob" in page
    assert f"/api/compliance/exports/{export.pk}/download/" in page
    # The download link in the queue works with the console session.
    download = client.get(f"/api/compliance/exports/{export.pk}/download/")
    assert download.status_code == 200
    assert download["Content-Type"] == "application/zip"


def test_the_console_refuses_to_erase_the_last_administrator(olga: User, alice: User) -> None:
    response = _officer_client(olga).post("/admin/audit/erasurerequest/add/", {"person": alice.pk})
    assert response.status_code == 200  # the form again, with the reason
    assert "last active administrator" in response.content.decode()
    assert not ErasureRequest.objects.exists()


def test_requests_cannot_be_edited_or_deleted_in_the_console(
    olga: User, bob: User, django_capture_on_commit_callbacks: Any
) -> None:
    client = _officer_client(olga)
    with django_capture_on_commit_callbacks(execute=False):
        client.post("/admin/audit/erasurerequest/add/", {"person": bob.pk})
    erasure = ErasureRequest.objects.get(subject=bob)
    assert client.get(f"/admin/audit/erasurerequest/{erasure.pk}/change/").status_code == 200  # view only
    assert (
        client.post(f"/admin/audit/erasurerequest/{erasure.pk}/delete/", {"post": "yes"}).status_code == 403
    )
    assert ErasureRequest.objects.filter(pk=erasure.pk).exists()


def test_a_member_is_kept_out_of_the_queue(bob: User) -> None:
    client = Client()
    client.force_login(bob)
    assert client.get("/admin/audit/exportrequest/").status_code == 302

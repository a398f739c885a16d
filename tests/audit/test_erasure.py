"""Erasure: after it, no table holds the person's data, their credentials fail, open sockets
close, and the audit chain still verifies."""

import json
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.apps import apps
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.sessions.models import Session
from django.db import models
from rest_framework.test import APIClient

from accounts.models import User
from audit.compliance import compliance_erasure_request, compliance_erasure_run, compliance_export_run
from audit.compliance.data_exports import compliance_export_request
from audit.models import AuditEvent, AuditSubject, ErasureRequest, ExportRequest
from audit.verification import audit_chain_verify
from tests.accounts.helpers import bearer_client, login
from tests.audit.people import USERNAME, Person, person_with_everything
from tests.inference.websocket import communicator_for

URL = "/api/compliance/erasures/"


def _personal_data_left(person: Person, user_pk: int) -> list[str]:
    """Every table, every row, every column: what still names the person or links to them.

    A plain number in a non-key column (usage rows' `user_id`) is kept on purpose: with the
    user row gone, nothing maps it back to anyone.
    """
    found = []
    user_model = apps.get_model("accounts", "User")
    for model in apps.get_models():
        for row in model._base_manager.all():
            for column in model._meta.concrete_fields:
                value = getattr(row, column.attname)
                if column.is_relation and column.related_model is user_model and value == user_pk:
                    found.append(f"{model._meta.label}.{column.name} links to the user")
                    continue
                if isinstance(value, models.Model) or value is None:
                    continue
                text = value if isinstance(value, str) else json.dumps(value, default=str)
                found += [
                    f"{model._meta.label}.{column.name} holds {detail!r}"
                    for detail in person.personal
                    if detail in text
                ]
    for session in Session.objects.all():
        if str(session.get_decoded().get("_auth_user_id")) == str(user_pk):
            found.append("a console session of the user")
    return found


def _erase(subject: User, requested_by: User, django_capture_on_commit_callbacks: Any) -> ErasureRequest:
    with django_capture_on_commit_callbacks(execute=False):
        erasure = compliance_erasure_request(subject=subject, requested_by=requested_by)
    compliance_erasure_run(erasure_id=str(erasure.pk))
    return ErasureRequest.objects.get(pk=erasure.pk)


def test_after_erasure_no_table_holds_the_person_and_the_chain_verifies(
    alice: User, olga: User, django_capture_on_commit_callbacks: Any
) -> None:
    person = person_with_everything(admin=alice)
    user_pk = person.user.pk
    # An export of theirs is waiting: it holds everything, so it must go too.
    with django_capture_on_commit_callbacks(execute=False):
        export = compliance_export_request(subject=person.user, requested_by=person.user)
    compliance_export_run(export_id=str(export.pk))
    export_file = ExportRequest.objects.get(pk=export.pk).file_name
    # The console's change log names them too (as the admin writes it for a change).
    LogEntry.objects.log_actions(
        user_id=alice.pk,
        queryset=[person.user],
        action_flag=CHANGE,
        change_message="Changed email.",
        single_object=True,
    )
    assert _personal_data_left(person, user_pk), "the fixture should hold personal data before erasure"
    # The console's own rows about them (their page, their key, their grant) name them by pseudonym.
    pseudonym = str(AuditSubject.objects.get(user=person.user).pseudonym)
    console_rows = AuditEvent.objects.filter(action__startswith="console.", target_pseudonym=pseudonym)
    assert {"accounts.user", "accounts.apikey", "inference.personmodelgrant"} <= set(
        console_rows.values_list("target_type", flat=True)
    )

    erasure = _erase(person.user, olga, django_capture_on_commit_callbacks)

    assert erasure.status == "done"
    assert _personal_data_left(person, user_pk) == []
    evidence = erasure.evidence
    assert evidence["user_deleted"] is True
    assert (evidence["conversations_deleted"], evidence["messages_deleted"]) == (1, 2)
    assert (evidence["api_keys_deleted"], evidence["exports_deleted"]) == (1, 1)
    assert evidence["object_permissions_dropped"] == 1
    assert evidence["usage_records_kept_pseudonymous"] == 1
    assert evidence["console_sessions_ended"] >= 1
    assert evidence["console_log_entries_deleted"] >= 1
    assert evidence["audit_rows_blanked"] > 0
    assert not (ExportRequest.objects.filter(pk=export.pk).exists())
    from django.conf import settings

    assert not (settings.GATEHOUSE_COMPLIANCE_EXPORT_DIR / export_file).exists()
    # Their credentials are dead.
    assert bearer_client(person.access).get("/api/usage/").status_code == 401
    assert bearer_client(person.key_secret).get("/v1/models").status_code == 401
    refreshed = APIClient().post("/api/auth/token/refresh/", {"refresh": person.refresh}, format="json")
    assert refreshed.status_code == 401
    # What must be kept is kept, without a name: the trail still verifies, the mapping is cut.
    report = audit_chain_verify()
    assert report.ok, report.as_dict()
    subject = AuditSubject.objects.get(pseudonym=erasure.subject_pseudonym)
    assert (subject.key, subject.display, subject.user_id) == ("", "", None)
    completed = AuditEvent.objects.get(action="compliance.erasure.completed")
    assert str(completed.target_pseudonym) == str(erasure.subject_pseudonym)
    assert completed.actor_display == "olga"


def test_console_rows_about_the_person_are_blanked_and_still_verify(
    alice: User, olga: User, django_capture_on_commit_callbacks: Any
) -> None:
    person = person_with_everything(admin=alice)
    console_rows = list(AuditEvent.objects.filter(action__startswith="console.").values_list("pk", flat=True))
    named = AuditEvent.objects.filter(pk__in=console_rows, target_display__contains=USERNAME)
    assert named.exists(), "the console's rows should name the person before erasure"

    erasure = _erase(person.user, olga, django_capture_on_commit_callbacks)

    for event in AuditEvent.objects.filter(pk__in=console_rows):
        row = " ".join(str(value) for value in event.__dict__.values())
        left = [detail for detail in person.personal if detail in row]
        assert left == [], f"{event.action} on {event.target_type} still holds {left}"
        if event.target_type in ("accounts.user", "accounts.apikey", "inference.personmodelgrant"):
            assert str(event.target_pseudonym) == str(erasure.subject_pseudonym)
            assert event.target_display == ""
    # The administrator's own details on those rows are theirs, and stay.
    assert set(AuditEvent.objects.filter(pk__in=console_rows).values_list("actor_display", flat=True)) == {
        "alice"
    }
    report = audit_chain_verify()
    assert report.ok, report.as_dict()


def test_members_may_erase_themselves_only(bob: User, carol: User) -> None:
    refused = bearer_client(login(carol).access).post(URL, {"subject": "bob"}, format="json")
    assert refused.status_code == 400
    mine = bearer_client(login(bob).access).post(URL, format="json")
    assert mine.status_code == 202
    assert mine.json()["subject"] == "bob"
    again = bearer_client(login(bob).access).post(URL, format="json")
    assert again.status_code == 409
    assert again.json()["existing"] == mine.json()["id"]


def test_the_last_administrator_cannot_be_erased(alice: User, olga: User) -> None:
    response = bearer_client(login(olga).access).post(URL, {"subject": "alice"}, format="json")
    assert response.status_code == 400
    assert "last active administrator" in response.json()["detail"]
    assert not ErasureRequest.objects.exists()


def test_running_twice_erases_once(bob: User, olga: User, django_capture_on_commit_callbacks: Any) -> None:
    erasure = _erase(bob, olga, django_capture_on_commit_callbacks)
    compliance_erasure_run(erasure_id=str(erasure.pk))  # a redelivered message
    again = ErasureRequest.objects.get(pk=erasure.pk)
    assert (again.status, again.attempts, again.evidence) == ("done", 1, erasure.evidence)
    assert AuditEvent.objects.filter(action="compliance.erasure.completed").count() == 1


def test_an_officer_follows_the_request_after_the_subject_is_gone(
    bob: User, olga: User, django_capture_on_commit_callbacks: Any
) -> None:
    erasure = _erase(bob, olga, django_capture_on_commit_callbacks)
    body = bearer_client(login(olga).access).get(f"{URL}{erasure.pk}/").json()
    assert (body["status"], body["subject"], body["progress"]) == ("done", None, 100)
    assert body["subject_pseudonym"] == str(erasure.subject_pseudonym)
    assert body["evidence"]["user_deleted"] is True


@pytest.mark.django_db(transaction=True)
async def test_erasure_closes_the_persons_open_websocket(bob: User, olga: User) -> None:
    pair = await database_sync_to_async(login)(bob)
    communicator = communicator_for(token=pair.access)
    assert (await communicator.connect())[0]

    def erase() -> None:
        erasure = compliance_erasure_request(subject=bob, requested_by=olga)
        compliance_erasure_run(erasure_id=str(erasure.pk))  # a no-op where the queue ran it already

    await database_sync_to_async(erase)()
    error = await communicator.receive_json_from(timeout=5)
    assert (error["type"], error["code"]) == ("error", "forbidden")
    assert await communicator.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401}
    await communicator.disconnect()
    assert not await database_sync_to_async(User.objects.filter(username="bob").exists)()


def test_no_username_is_written_where_erasure_cannot_reach(alice: User) -> None:
    """Chained fields are frozen forever, so a name there would outlive any erasure."""
    person_with_everything(admin=alice)
    assert AuditEvent.objects.count() > 10
    for canonical in AuditEvent.objects.values_list("metadata_json", flat=True):
        assert USERNAME not in canonical

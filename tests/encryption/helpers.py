"""Stored values read past the models, master keys made up for a test, and a built export."""

import base64
import os
from dataclasses import dataclass
from typing import Any

from django.db import connection
from rest_framework.test import APIClient

from accounts.models import User
from audit.compliance import compliance_export_run
from audit.models import ExportRequest
from encryption.envelope import token_key_id
from inference.models import Message
from tests.accounts.helpers import bearer_client
from tests.audit.people import Person, person_with_everything


def master_key_entry(key_id: str) -> str:
    return f"{key_id}:{base64.b64encode(os.urandom(32)).decode()}"


def stored_contents() -> list[str]:
    """Every message's content exactly as the database holds it."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT content FROM {Message._meta.db_table} ORDER BY id")  # noqa: S608
        return [row[0] for row in cursor.fetchall()]


def stored_key_ids() -> list[int | None]:
    return [token_key_id(stored) for stored in stored_contents()]


def plain_content_store(*, message: Message, text: str) -> None:
    """Write around Gatehouse, as a raw SQL import or an older release would."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Message._meta.db_table} SET content = %s WHERE id = %s",  # noqa: S608
            [text, message.pk],
        )


@dataclass(frozen=True)
class BuiltExport:
    person: Person
    client: APIClient  # the person's own
    export: ExportRequest


def export_built(*, admin: User, capture_on_commit: Any) -> BuiltExport:
    """Someone with everything asks for their export, and it is built as a worker builds it."""
    person = person_with_everything(admin=admin)
    client = bearer_client(person.access)
    with capture_on_commit(execute=False):
        created = client.post("/api/compliance/exports/", {}, format="json").json()
    compliance_export_run(export_id=created["id"])
    return BuiltExport(person=person, client=client, export=ExportRequest.objects.get(pk=created["id"]))

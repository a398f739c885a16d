"""Encryption at rest, end to end: what a chat stores and what an export writes, read raw."""

import hashlib
import zipfile
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.db import connection

from accounts.models import User
from encryption.envelope import PREFIX
from encryption.files import MAGIC
from inference.models import Conversation, Message, ModelVersion
from tests.audit.people import SECRET_PLAN
from tests.encryption.helpers import export_built
from tests.inference.websocket import chat_once

SECRET_QUESTION = "where did the quistorpian tulips go"


def _raw(table: str, column: str) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table}")  # noqa: S608 - our own table names
        return [row[0] for row in cursor.fetchall()]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("inference_backend")
async def test_a_stored_chat_holds_no_plain_text_in_the_database(
    bob: User, demo_version: ModelVersion
) -> None:
    start, *tokens, _ = await chat_once(
        bob, "c1", max_tokens=6, temperature=0.0, messages=[{"role": "user", "content": SECRET_QUESTION}]
    )
    reply = "".join(str(token["text"]) for token in tokens)
    assert reply

    contents = await database_sync_to_async(_raw)(Message._meta.db_table, "content")
    titles = await database_sync_to_async(_raw)(Conversation._meta.db_table, "title")
    assert len(contents) == 2
    assert len(titles) == 1
    for stored in [*contents, *titles]:
        assert stored.startswith(PREFIX)
        assert "quistorpian" not in stored
        assert "tulips" not in stored
        assert stored not in (SECRET_QUESTION, reply)

    # Read through the models, everything is as it was said.
    conversation = await database_sync_to_async(Conversation.objects.get)(pk=start["conversation"])
    assert conversation.title == SECRET_QUESTION
    said = await database_sync_to_async(lambda: [m.content for m in conversation.messages.all()])()
    assert said == [SECRET_QUESTION, reply]


@pytest.mark.django_db
def test_an_export_file_is_sealed_on_disk_and_downloads_as_the_plain_zip(
    alice: User, compliance_export_dir: Path, django_capture_on_commit_callbacks: Any
) -> None:
    built = export_built(admin=alice, capture_on_commit=django_capture_on_commit_callbacks)
    person, client, export = built.person, built.client, built.export

    on_disk = (compliance_export_dir / export.file_name).read_bytes()
    assert on_disk.startswith(MAGIC)
    assert b"quistorpian" not in on_disk
    assert person.user.username.encode() not in on_disk
    assert not zipfile.is_zipfile(BytesIO(on_disk))
    assert not list(compliance_export_dir.glob(".*partial"))

    response = client.get(f"/api/compliance/exports/{export.pk}/download/")
    assert response.status_code == 200
    assert response["Content-Length"] == str(export.file_bytes)
    body = b"".join(response.streaming_content)
    assert len(body) == export.file_bytes
    assert hashlib.sha256(body).hexdigest() == export.file_sha256
    conversations = zipfile.ZipFile(BytesIO(body)).read("conversations.json").decode()
    assert SECRET_PLAN in conversations

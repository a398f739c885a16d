"""Upgrading encrypts the conversations already stored; going back decrypts them."""

from collections.abc import Iterator

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from accounts.models import User
from encryption.envelope import PREFIX
from inference.models import Message, ModelVersion

BEFORE = [("inference", "0013_version_prices")]
AFTER = [("inference", "0014_encrypt_conversations")]


def _migrate(targets: list[tuple[str, str]]) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)


def _raw(sql: str) -> list[tuple[str, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return [tuple(row) for row in cursor.fetchall()]


@pytest.fixture
def before_encryption() -> Iterator[None]:
    _migrate(BEFORE)
    yield
    _migrate(AFTER)


@pytest.mark.django_db(transaction=True)
def test_stored_conversations_are_encrypted_by_the_upgrade_and_decrypted_by_a_downgrade(
    bob: User, demo_version: ModelVersion, before_encryption: None
) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO inference_conversation (id, owner_id, model_id, title, channel, created_at, updated_at) "
            "VALUES (%s, %s, %s, %s, 'websocket', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
            ["0123456789abcdef0123456789abcdef", bob.pk, demo_version.model_id, "old secret title"],
        )
        cursor.execute(
            "INSERT INTO inference_message (conversation_id, role, content, finish_reason, created_at) "
            "VALUES (%s, 'user', %s, '', CURRENT_TIMESTAMP)",
            ["0123456789abcdef0123456789abcdef", "old secret message"],
        )

    _migrate(AFTER)
    stored = _raw("SELECT title FROM inference_conversation") + _raw("SELECT content FROM inference_message")
    assert all(value.startswith(PREFIX) and "secret" not in value for (value,) in stored)

    assert [m.content for m in Message.objects.all()] == ["old secret message"]

    _migrate(BEFORE)
    assert _raw("SELECT title FROM inference_conversation") == [("old secret title",)]
    assert _raw("SELECT content FROM inference_message") == [("old secret message",)]

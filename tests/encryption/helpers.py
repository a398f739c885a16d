"""Stored values read past the models, and master keys made up for a test."""

import base64
import os

from django.db import connection

from encryption.envelope import token_key_id
from inference.models import Message


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

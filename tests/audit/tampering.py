"""Acting on the trail as a database superuser would, past the app's guards."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connection

from audit import chain
from audit.models import AuditEvent
from audit.services import chained_values
from audit.triggers import append_only_install, append_only_uninstall


@contextmanager
def as_database_superuser() -> Iterator[None]:
    """Triggers off: PostgreSQL's replica role (superuser only), or SQLite's dropped triggers."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET session_replication_role = replica")
        try:
            yield
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SET session_replication_role = DEFAULT")
    else:
        append_only_uninstall(connection)
        try:
            yield
        finally:
            append_only_install(connection)


def sql(statement: str, params: list[Any] | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params or [])


def chain_recompute() -> None:
    """What a careful forger does after an edit: rehash every event so each link holds again."""
    previous = chain.GENESIS
    for event in AuditEvent.objects.filter(sequence__isnull=False).order_by("sequence"):
        digest = chain.link_hash(previous, chain.event_canonical(chained_values(event)))
        sql("UPDATE audit_auditevent SET hash = %s WHERE id = %s", [digest, event.pk])
        previous = digest

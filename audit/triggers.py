"""Database triggers that make the trail append-only, for PostgreSQL and SQLite.

They refuse DELETE and TRUNCATE, and refuse any UPDATE except erasure's: blanking the
personal columns (name, address, user agent) and nulling the live-user link, which the hash
chain does not cover. A database superuser can still drop them; the chain and the external
checkpoints are what catch that. Production also grants the app's role INSERT and SELECT only
(plus UPDATE on the erasable columns): see `deploy/postgres/audit-grants.sql`.
"""

from collections.abc import Sequence

from django.db.backends.base.base import BaseDatabaseWrapper

from audit import chain

TABLE = "audit_auditevent"
MESSAGE = "audit events are append-only"

# Every chained column, the row id and the hash: an UPDATE must leave each as it was.
FROZEN = ("id", *chain.CHAINED_FIELDS, "hash")
# Erasable columns may only be blanked (or nulled), never given another value.
_BLANKABLE = ("actor_display", "target_display", "user_agent")
_NULLABLE = ("actor_id", "client_ip")


def _update_forbidden_condition(frozen: Sequence[str]) -> str:
    changed = [f"NEW.{name} IS NOT OLD.{name}" for name in frozen]
    blanked = [f"(NEW.{name} <> '' AND NEW.{name} IS NOT OLD.{name})" for name in _BLANKABLE]
    nulled = [f"(NEW.{name} IS NOT NULL AND NEW.{name} IS NOT OLD.{name})" for name in _NULLABLE]
    return " OR ".join(changed + blanked + nulled)


def _postgresql_install(frozen: Sequence[str]) -> list[str]:
    condition = _update_forbidden_condition(frozen).replace(" IS NOT ", " IS DISTINCT FROM ")
    return [
        f"""
        CREATE OR REPLACE FUNCTION audit_event_guard() RETURNS trigger AS $$
        BEGIN
            IF TG_OP = 'UPDATE' AND NOT ({condition}) THEN
                RETURN NEW;
            END IF;
            RAISE EXCEPTION '{MESSAGE} (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
        END;
        $$ LANGUAGE plpgsql
        """,
        f"""CREATE TRIGGER audit_event_guard_rows BEFORE UPDATE OR DELETE ON {TABLE}
            FOR EACH ROW EXECUTE FUNCTION audit_event_guard()""",
        f"""CREATE TRIGGER audit_event_guard_truncate BEFORE TRUNCATE ON {TABLE}
            FOR EACH STATEMENT EXECUTE FUNCTION audit_event_guard()""",
    ]


def _sqlite_install(frozen: Sequence[str]) -> list[str]:
    return [
        f"""CREATE TRIGGER audit_event_guard_update BEFORE UPDATE ON {TABLE}
            WHEN {_update_forbidden_condition(frozen)}
            BEGIN SELECT RAISE(ABORT, '{MESSAGE} (UPDATE refused)'); END""",
        f"""CREATE TRIGGER audit_event_guard_delete BEFORE DELETE ON {TABLE}
            BEGIN SELECT RAISE(ABORT, '{MESSAGE} (DELETE refused)'); END""",
    ]


def _uninstall(vendor: str) -> list[str]:
    if vendor == "postgresql":
        return [
            f"DROP TRIGGER IF EXISTS audit_event_guard_rows ON {TABLE}",
            f"DROP TRIGGER IF EXISTS audit_event_guard_truncate ON {TABLE}",
            "DROP FUNCTION IF EXISTS audit_event_guard()",
        ]
    return [
        "DROP TRIGGER IF EXISTS audit_event_guard_update",
        "DROP TRIGGER IF EXISTS audit_event_guard_delete",
    ]


def _run(connection: BaseDatabaseWrapper, statements: list[str]) -> None:
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def append_only_install(connection: BaseDatabaseWrapper, *, frozen: Sequence[str] = FROZEN) -> None:
    """Install (or reinstall) the triggers. A migration passes the columns of its own time, so a
    later chained field does not reach back into a migration that ran before its column existed."""
    if connection.vendor == "postgresql":
        _run(connection, _postgresql_install(frozen))
    elif connection.vendor == "sqlite":
        _run(connection, _sqlite_install(frozen))
    else:
        raise NotImplementedError(f"no append-only triggers for {connection.vendor}")


def append_only_uninstall(connection: BaseDatabaseWrapper) -> None:
    """Only for a test database's flush between tests, and for the migration's reversal."""
    _run(connection, _uninstall(connection.vendor))

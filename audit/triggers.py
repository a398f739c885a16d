"""Database triggers that make the trail append-only, for PostgreSQL and SQLite.

They refuse DELETE and TRUNCATE, and refuse any UPDATE except two:
- the seal (`audit.sealing`): the sequence and the hash going from NULL to a value, once, with
  nothing else on the row changing;
- erasure's: blanking the personal columns (name, address, user agent) and nulling the
  live-user link, which the hash chain does not cover, with the seal columns left as they are.
A database superuser can still drop them; the chain and the external checkpoints are what catch
that. Production also grants the app's role INSERT and SELECT only (plus UPDATE on the erasable
and the seal columns): see `deploy/postgres/audit-grants.sql`.
"""

from collections.abc import Sequence

from django.db.backends.base.base import BaseDatabaseWrapper

from audit import chain

TABLE = "audit_auditevent"
MESSAGE = "audit events are append-only"

# Set by the seal, once, from NULL to a value; frozen after.
SEAL = ("sequence", "hash")
# Every other chained column, the row id and the row's digest: an UPDATE must leave each as it was.
FROZEN = ("id", *chain.PENDING_FIELDS, "row_digest")
# Erasable columns may only be blanked (or nulled), never given another value.
_BLANKABLE = ("actor_display", "target_display", "user_agent")
_NULLABLE = ("actor_id", "client_ip")


def _unchanged(names: Sequence[str]) -> list[str]:
    return [f"NEW.{name} IS OLD.{name}" for name in names]


def _update_allowed_condition(frozen: Sequence[str], seal: Sequence[str]) -> str:
    """True for the updates allowed: the seal alone, or erasure alone. `IS` compares NULLs as
    equal (PostgreSQL spells it IS NOT DISTINCT FROM)."""
    erased = [f"(NEW.{name} = '' OR NEW.{name} IS OLD.{name})" for name in _BLANKABLE] + [
        f"(NEW.{name} IS NULL OR NEW.{name} IS OLD.{name})" for name in _NULLABLE
    ]
    erasure = " AND ".join(_unchanged(seal) + erased)
    allowed = f"({erasure})"
    if seal:
        sealing = " AND ".join(
            [f"OLD.{name} IS NULL AND NEW.{name} IS NOT NULL" for name in seal]
            + _unchanged(_BLANKABLE + _NULLABLE)
        )
        allowed = f"({allowed} OR ({sealing}))"
    return " AND ".join([*_unchanged(frozen), allowed])


def _postgresql_install(frozen: Sequence[str], seal: Sequence[str]) -> list[str]:
    condition = _update_allowed_condition(frozen, seal).replace(" IS OLD.", " IS NOT DISTINCT FROM OLD.")
    return [
        f"""
        CREATE OR REPLACE FUNCTION audit_event_guard() RETURNS trigger AS $$
        BEGIN
            IF TG_OP = 'UPDATE' AND COALESCE(({condition}), false) THEN
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


def _sqlite_install(frozen: Sequence[str], seal: Sequence[str]) -> list[str]:
    return [
        f"""CREATE TRIGGER audit_event_guard_update BEFORE UPDATE ON {TABLE}
            WHEN NOT COALESCE(({_update_allowed_condition(frozen, seal)}), 0)
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


def append_only_install(
    connection: BaseDatabaseWrapper, *, frozen: Sequence[str] = FROZEN, seal: Sequence[str] = SEAL
) -> None:
    """Install (or reinstall) the triggers.

    A migration passes the columns of its own time, so a later column does not reach back into
    a migration that ran before it existed: one that freezes the sequence and hash (and passes
    no `seal`) installs the triggers as they were before rows were sealed off the request path.
    Raises NotImplementedError on a database other than PostgreSQL and SQLite.
    """
    seal = [name for name in seal if name not in frozen]
    if connection.vendor == "postgresql":
        install = _postgresql_install(frozen, seal)
    elif connection.vendor == "sqlite":
        install = _sqlite_install(frozen, seal)
    else:
        raise NotImplementedError(f"no append-only triggers for {connection.vendor}")
    # Neither database has CREATE OR REPLACE TRIGGER in every supported version.
    _run(connection, [*_uninstall(connection.vendor), *install])


def append_only_uninstall(connection: BaseDatabaseWrapper) -> None:
    """Only for a test database's flush between tests, and for migrations that rebuild the table."""
    _run(connection, _uninstall(connection.vendor))

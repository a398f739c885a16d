"""The production grants: the application's database role may append to the trail and read it,
seal what it appended (set a row's sequence and hash), and blank a person's details for
erasure, and nothing else (`deploy/postgres/audit-grants.sql`).

Run as a role that does not own the table, connected on its own, with the file applied as the
owner applies it. Each refusal must come from the grants ("permission denied", "must be
owner"), not from the append-only triggers, which refuse the same statements in their own
words: the grants are the second lock, and this shows it holds by itself.
"""

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.conf import settings
from django.db import connection
from psycopg import errors, sql

from accounts.models import User
from audit import chain
from audit.models import AuditEvent
from audit.sealing import CHAIN_LOCK, audit_chain_head, seal_statement_postgresql
from audit.services import audit_event_build, chained_values
from audit.subjects import audit_pseudonym
from audit.verification import audit_chain_verify
from tests.accounts.helpers import login
from tests.audit.sealed import sealed

pytestmark = [
    pytest.mark.skipif(
        "postgresql" not in settings.DATABASES["default"]["ENGINE"],
        reason="database roles and grants are PostgreSQL's; the embedded profile's SQLite has "
        "only the append-only triggers, tested in tests/audit/test_chain.py",
    ),
    pytest.mark.django_db(transaction=True),
]

GRANTS = Path(settings.BASE_DIR) / "deploy" / "postgres" / "audit-grants.sql"
# The role the file is written for; an operator replaces it with their own, as the test does.
FILE_ROLE = "gatehouse_app"


def _connect(user: str) -> psycopg.Connection[Any]:
    database = connection.settings_dict
    return psycopg.connect(
        host=database["HOST"] or "127.0.0.1",
        port=int(database["PORT"] or 5432),
        dbname=database["NAME"],
        user=user,
        autocommit=True,
    )


@pytest.fixture
def app_role(transactional_db: None) -> Iterator[psycopg.Connection[Any]]:
    """A login role of its own with the file's grants, and a connection as it; dropped after."""
    role = f"gatehouse_app_test_{uuid.uuid4().hex[:12]}"
    grants = GRANTS.read_text()
    assert re.search(rf"\b{FILE_ROLE}\b", grants), f"{GRANTS.name} no longer names {FILE_ROLE}"
    owner = _connect(connection.settings_dict["USER"])
    owner.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        owner.execute(re.sub(rf"\b{FILE_ROLE}\b", role, grants).encode())
        with _connect(role) as app:
            assert app.execute("SELECT current_user").fetchone() == (role,)
            yield app
    finally:
        owner.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        owner.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
        owner.close()


@pytest.fixture
def trail(alice: User, bob: User) -> User:
    """Events about bob, as target (his account's creation) and as actor (his login), sealed."""
    login(bob)
    sealed()
    return bob


def _an_event_id() -> int:
    return int(
        AuditEvent.objects.filter(sequence__isnull=False)
        .order_by("-sequence")
        .values_list("pk", flat=True)[0]
    )


@pytest.fixture
def other_sealers_held_off() -> Iterator[None]:
    """Hold the chain's lock (as a session lock), so no background sealer (the suite's Celery
    worker runs one) seals this test's row before the test seals it itself."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", [CHAIN_LOCK])
        try:
            yield
        finally:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [CHAIN_LOCK])


@pytest.mark.usefixtures("other_sealers_held_off")
def test_the_app_role_appends_seals_and_reads(app_role: psycopg.Connection[Any], trail: User) -> None:
    # An append as the service writes it: every column but the id, unsealed (no sequence, no
    # hash yet), with its digest.
    event = audit_event_build(
        action="test.granted", actor_kind=AuditEvent.ActorKind.SYSTEM, metadata={"n": 1}
    )
    fields = [field for field in AuditEvent._meta.concrete_fields if field.column != "id"]
    insert = sql.SQL("INSERT INTO audit_auditevent ({columns}) VALUES ({values}) RETURNING id").format(
        columns=sql.SQL(", ").join(sql.Identifier(field.column) for field in fields),
        values=sql.SQL(", ").join(sql.Placeholder() * len(fields)),
    )
    values = [field.get_db_prep_save(getattr(event, field.attname), connection) for field in fields]
    inserted = app_role.execute(insert, values).fetchone()
    assert inserted is not None
    event.pk = inserted[0]
    assert audit_chain_verify().pending_events == 1
    # The seal, as `audit.sealing` writes it: the app role may set the sequence and the hash.
    head_sequence, head_hash = audit_chain_head()
    event.sequence = head_sequence + 1
    event.hash = chain.link_hash(head_hash, chain.event_canonical(chained_values(event)))
    with app_role.transaction():
        sealed_rows = app_role.execute(
            seal_statement_postgresql(1), [event.pk, event.sequence, event.hash]
        ).rowcount
    assert sealed_rows == 1
    row = app_role.execute("SELECT count(*), max(sequence) FROM audit_auditevent").fetchone()
    assert row == (AuditEvent.objects.count(), head_sequence + 1)
    report = audit_chain_verify()
    assert report.ok, report.as_dict()
    assert report.pending_events == 0


def test_the_app_role_blanks_a_persons_details_for_erasure(
    app_role: psycopg.Connection[Any], trail: User
) -> None:
    """The statements `audit.subjects.audit_subject_erase` and the user's deletion issue."""
    pseudonym = audit_pseudonym(user=trail)
    with app_role.transaction():
        app_role.execute("SELECT id FROM audit_auditsubject WHERE user_id = %s FOR UPDATE", [trail.pk])
        as_actor = app_role.execute(
            "UPDATE audit_auditevent SET actor_id = NULL, actor_display = '', client_ip = NULL, user_agent = '' "
            "WHERE actor_pseudonym = %s",
            [pseudonym],
        ).rowcount
        as_target = app_role.execute(
            "UPDATE audit_auditevent SET target_display = '' WHERE target_pseudonym = %s", [pseudonym]
        ).rowcount
        app_role.execute(
            "UPDATE audit_auditsubject SET key = '', display = '', user_id = NULL, erased_at = now() "
            "WHERE user_id = %s",
            [trail.pk],
        )
    assert as_actor > 0
    assert as_target > 0
    assert not AuditEvent.objects.filter(actor_pseudonym=pseudonym).exclude(actor_display="").exists()
    assert not AuditEvent.objects.filter(target_pseudonym=pseudonym).exclude(target_display="").exists()


REFUSED = {
    "rewrite an action": "UPDATE audit_auditevent SET action = 'nothing.happened' WHERE id = %s",
    "rewrite metadata": "UPDATE audit_auditevent SET metadata_json = '{}' WHERE id = %s",
    "rewrite a row's digest": "UPDATE audit_auditevent SET row_digest = repeat('0', 64) WHERE id = %s",
    "delete a row": "DELETE FROM audit_auditevent WHERE id = %s",
    "truncate the trail": "TRUNCATE audit_auditevent",
    "drop the append-only trigger": "DROP TRIGGER audit_event_guard_rows ON audit_auditevent",
    "switch the triggers off": "ALTER TABLE audit_auditevent DISABLE TRIGGER ALL",
}


@pytest.mark.parametrize("what", list(REFUSED))
def test_the_app_role_may_not(what: str, app_role: psycopg.Connection[Any], trail: User) -> None:
    statement = REFUSED[what]
    before = list(AuditEvent.objects.order_by("sequence").values_list("sequence", "action", "hash"))
    with pytest.raises(errors.InsufficientPrivilege) as refused:
        app_role.execute(statement, [_an_event_id()] if "%s" in statement else None)
    # The grants' words, not the triggers' ("audit events are append-only").
    assert re.match(
        r"(permission denied for table|must be owner of (table|relation)) audit_auditevent",
        str(refused.value),
    )
    after = list(AuditEvent.objects.order_by("sequence").values_list("sequence", "action", "hash"))
    assert after == before


SEAL_REWRITES = {
    "rewrite a hash": "UPDATE audit_auditevent SET hash = repeat('0', 64) WHERE id = %s",
    "move a row in the chain": "UPDATE audit_auditevent SET sequence = sequence + 1000000 WHERE id = %s",
    "unseal a row": "UPDATE audit_auditevent SET sequence = NULL, hash = NULL WHERE id = %s",
}


@pytest.mark.parametrize("what", list(SEAL_REWRITES))
def test_the_app_role_may_seal_but_never_reseal(
    what: str, app_role: psycopg.Connection[Any], trail: User
) -> None:
    """The seal columns are granted (the app seals), so here the triggers are what refuse: a
    sealed row's sequence and hash are set once, from nothing, and never again."""
    before = list(AuditEvent.objects.order_by("sequence").values_list("sequence", "action", "hash"))
    with pytest.raises(errors.InsufficientPrivilege, match="audit events are append-only"):
        app_role.execute(SEAL_REWRITES[what], [_an_event_id()])
    after = list(AuditEvent.objects.order_by("sequence").values_list("sequence", "action", "hash"))
    assert after == before

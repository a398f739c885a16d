"""Audit appends from an event loop, straight to PostgreSQL (`audit.appender`).

What they are held to: a row has committed when the append returns; appends that overlap share
one INSERT; the rows seal and verify like any other; a row the database refuses fails alone;
a connection that broke is replaced and the row written once, even when the break came after
the commit. On SQLite there is no such path: everything goes through Django's transaction.
"""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from channels.db import database_sync_to_async
from django.db import connection
from django.test import override_settings

from accounts.models import User
from audit import appender
from audit.appender import audit_appender_close, audit_appends_direct, audit_event_append_async
from audit.context import RequestContext, request_context_bound
from audit.models import AuditEvent
from audit.sealing import audit_seal_pending
from audit.services import audit_event_build
from audit.verification import audit_chain_verify
from tests.profile import PRODUCTION

pytestmark = pytest.mark.django_db(transaction=True)
postgresql_only = pytest.mark.skipif(not PRODUCTION, reason="the appender writes to PostgreSQL only")


@pytest.fixture(autouse=True)
async def _direct_appends() -> AsyncIterator[None]:
    with override_settings(GATEHOUSE_AUDIT_DIRECT_APPENDS=True):
        yield
    await audit_appender_close()  # the test database is dropped at the end: no session left on it


def _built(actor: User, count: int) -> list[AuditEvent]:
    return [audit_event_build(action="test.appender", actor=actor, metadata={"n": n}) for n in range(count)]


def _stored(events: list[AuditEvent]) -> int:
    return AuditEvent.objects.filter(uuid__in=[event.uuid for event in events]).count()


def _sealed(events: list[AuditEvent]) -> int:
    return AuditEvent.objects.filter(
        uuid__in=[event.uuid for event in events], sequence__isnull=False
    ).count()


def _statements() -> int:
    return appender._appender().statements


@postgresql_only
async def test_overlapping_appends_share_one_insert_and_seal_like_any_other(alice: User) -> None:
    events = await database_sync_to_async(_built)(alice, 20)
    before = _statements()

    await asyncio.gather(*(audit_event_append_async(event=event) for event in events))

    assert _statements() - before == 1
    assert await database_sync_to_async(_stored)(events) == 20
    outcome = await database_sync_to_async(audit_seal_pending)()
    assert outcome.refused == []
    assert await database_sync_to_async(_sealed)(events) == 20
    report = await database_sync_to_async(audit_chain_verify)()
    assert report.ok, report


@postgresql_only
async def test_a_row_the_database_refuses_fails_alone(alice: User) -> None:
    events = await database_sync_to_async(_built)(alice, 5)
    events[2].actor_id = 2_000_000_000  # no such user: the foreign key refuses it

    results = await asyncio.gather(
        *(audit_event_append_async(event=event) for event in events), return_exceptions=True
    )

    assert [type(result) for result in results] == [
        type(None),
        type(None),
        psycopg.errors.ForeignKeyViolation,
        type(None),
        type(None),
    ]
    assert await database_sync_to_async(_stored)(events) == 4


def _built_in_a_request(actor: User, target: User) -> AuditEvent:
    """An event with every column the appender sends set, the address an IPv4-mapped IPv6 one."""
    context = RequestContext(
        request_id="req-appender-1", client_ip="::ffff:10.1.2.3", user_agent="Büro/1.0 ✓"
    )
    with request_context_bound(context):
        return audit_event_build(
            action="test.appender.full",
            actor=actor,
            target=target,
            metadata={"ratio": 0.5, "text": 'ünïcode \n "quoted"', "n": 7},
        )


@postgresql_only
async def test_every_column_is_stored_as_built_and_seals(alice: User, bob: User) -> None:
    """The appender sends the built values without Django's per-field preparation: each stored
    column equals the built one, and the sealer (which checks the row's digest) and the
    verification of personal details (the address, the agent) accept the row."""
    event = await database_sync_to_async(_built_in_a_request)(alice, bob)

    await audit_event_append_async(event=event)

    stored = await AuditEvent.objects.aget(uuid=event.uuid)
    for field in AuditEvent._meta.concrete_fields:
        if not field.primary_key and field.name != "client_ip":
            # Compared as text: a pseudonym is built as text and read back as a UUID.
            assert str(getattr(stored, field.attname)) == str(getattr(event, field.attname)), field.name
    assert stored.client_ip == "10.1.2.3"  # the IPv4 client it is (`audit.chain.address_canonical`)
    outcome = await database_sync_to_async(audit_seal_pending)()
    assert outcome.refused == []
    report = await database_sync_to_async(audit_chain_verify)(personal=True)
    assert report.ok, report


@postgresql_only
async def test_a_value_over_its_column_length_is_refused_not_cut(alice: User) -> None:
    """The arrays are cast to the columns' bare types, so the column's own length refuses a
    value, as a single-row INSERT would, rather than a cast quietly cutting it."""
    good, long = await database_sync_to_async(_built)(alice, 2)
    long.action = "x" * 101  # the column holds 100

    results = await asyncio.gather(
        audit_event_append_async(event=good), audit_event_append_async(event=long), return_exceptions=True
    )

    assert results[0] is None
    assert isinstance(results[1], psycopg.errors.StringDataRightTruncation)
    assert await database_sync_to_async(_stored)([good]) == 1
    assert await database_sync_to_async(_stored)([long]) == 0


def _backend_terminate(pid: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])


@postgresql_only
async def test_a_connection_the_server_dropped_is_replaced(alice: User) -> None:
    first, second = await database_sync_to_async(_built)(alice, 2)
    await audit_event_append_async(event=first)
    dropped = await appender._appender()._connected()
    await database_sync_to_async(_backend_terminate)(dropped.info.backend_pid)

    await audit_event_append_async(event=second)

    assert await database_sync_to_async(_stored)([first, second]) == 2
    assert (await appender._appender()._connected()) is not dropped


class _BreaksAfterCommit:
    """A connection whose next statement runs, commits, and then reports the connection lost."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.closed = self.broken = False

    async def execute(self, *args: Any, **kwargs: Any) -> None:
        await self.real.execute(*args, **kwargs)
        self.broken = True
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    async def close(self) -> None:
        self.closed = True


@postgresql_only
async def test_a_row_that_committed_before_the_connection_broke_is_written_once(
    alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    (event,) = await database_sync_to_async(_built)(alice, 1)
    queue = appender._appender()
    real = await queue._connected()
    monkeypatch.setattr(queue, "_connection", _BreaksAfterCommit(real))

    await audit_event_append_async(event=event)  # the retry meets its own row: a success

    assert await database_sync_to_async(_stored)([event]) == 1


@pytest.mark.skipif(PRODUCTION, reason="the embedded profile's database is SQLite")
def test_on_sqlite_appends_go_through_djangos_transaction() -> None:
    assert not audit_appends_direct()

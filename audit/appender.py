"""Audit appends from an event loop, straight to PostgreSQL: no thread, one round trip.

The chat pipeline records each chat's end on the event loop (`inference.chat.outcome`).
Through Django that is a hop to a thread and three round trips (BEGIN, INSERT, COMMIT);
here it is one INSERT, in autocommit, on a connection this event loop keeps: the row has
committed when `audit_event_append_async` returns, so the caller still answers no one before
its record is durable.

Concurrent appends share their round trips (group commit): the events that queue while one
INSERT is in flight go out together in the next, as one INSERT of column arrays (one transaction).
The rows are the ones `audit.services.audit_event_record` writes, unsealed with their digest;
the sealer links them into the chain like any other.

Failure mode: an append raises what the database (or the driver) raised, and its row is not
written. One bad row does not sink the others it was sent with: a batch the database refuses
is retried row by row. A connection that broke (the server restarted) is replaced and the
batch sent once more on the new one; a batch that had committed before the break is then
refused as a duplicate (each row's uuid is unique), which is taken as the success it was.

Only where the database is PostgreSQL and `GATEHOUSE_AUDIT_DIRECT_APPENDS` is on (the default
there, outside the test suite, whose tests roll their transactions back). Everything else,
and any event whose building needs the database, goes through `audit_event_record`.
"""

import asyncio
import logging
import re
import weakref
from functools import cache
from typing import Any

import psycopg
from django.conf import settings
from django.db import connection, connections

from audit.models import AuditEvent
from audit.sealer import audit_sealer_ensure
from audit.services import insert_fields, insert_statement, row_values, server_side_prepare

logger = logging.getLogger(__name__)

# Rows per INSERT, at most; more waiting go out in the next.
BATCH_ROWS = 64


def audit_appends_direct() -> bool:
    """Whether appends from an event loop go straight to the database (see the module)."""
    return bool(getattr(settings, "GATEHOUSE_AUDIT_DIRECT_APPENDS", False)) and (
        connections["default"].vendor == "postgresql"
    )


async def audit_event_append_async(*, event: AuditEvent) -> None:
    """Insert `event` (built by `audit.services.audit_event_build`), committed on return.

    Raises what the database raised (a psycopg error); the row is then not in the trail.
    """
    await _appender().append(row_values()(event))
    audit_sealer_ensure()


async def audit_appender_close() -> None:
    """Close this event loop's connection, if it has one (server shutdown; a test's end)."""
    appender = _appenders.pop(asyncio.get_running_loop(), None)
    if appender is not None:
        await appender.close()


# One appender per event loop: an asyncio connection belongs to the loop that made it.
_appenders: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Appender]" = weakref.WeakKeyDictionary()


def _appender() -> "_Appender":
    loop = asyncio.get_running_loop()
    appender = _appenders.get(loop)
    if appender is None:
        appender = _appenders[loop] = _Appender()
    return appender


class _Appender:
    """The queue of rows waiting for this loop's connection, and the task that sends them."""

    def __init__(self) -> None:
        self._waiting: list[tuple[tuple[Any, ...], asyncio.Future[None]]] = []
        self._sending: asyncio.Task[None] | None = None
        self._connection: psycopg.AsyncConnection[Any] | None = None
        self.statements = 0  # INSERTs sent: fewer than rows when appends overlapped

    async def append(self, values: tuple[Any, ...]) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((values, future))
        if self._sending is None:
            self._sending = asyncio.ensure_future(self._send_waiting())
        await future

    async def close(self) -> None:
        if self._sending is not None:
            await asyncio.wait({self._sending})  # what is queued goes out first
        await self._disconnect()

    async def _send_waiting(self) -> None:
        batch: list[tuple[tuple[Any, ...], asyncio.Future[None]]] = []
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[:BATCH_ROWS], self._waiting[BATCH_ROWS:]
                await self._send(batch)
                batch = []
        finally:
            self._sending = None
            # Cancelled (the loop is closing): whoever still waits is told so, not left waiting.
            for _, future in [*batch, *self._waiting]:
                if not future.done():
                    future.cancel()
            self._waiting.clear()

    async def _send(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[None]]]) -> None:
        try:
            await self._insert([values for values, _ in batch])
        except (psycopg.IntegrityError, psycopg.DataError) as refused:
            if len(batch) == 1:
                _settle(batch, refused)
                return
            for one in batch:  # only the row at fault fails
                await self._send([one])
            return
        except Exception as error:  # noqa: BLE001 - handed to each caller, whose append raises it
            _settle(batch, error)
            return
        _settle(batch, None)

    async def _insert(self, rows: list[tuple[Any, ...]]) -> None:
        """One INSERT of `rows`, once more on a new connection if the one it used broke."""
        if len(rows) == 1:  # one value per column: cheaper to send than arrays of one
            statement, parameters = insert_statement(), list(rows[0])
        else:
            statement = columns_insert_statement()
            parameters = [list(column) for column in zip(*rows, strict=True)]
        for attempt in range(2):
            connection = await self._connected()
            try:
                self.statements += 1
                await connection.execute(statement, parameters, prepare=server_side_prepare())
                return
            except psycopg.errors.UniqueViolation:
                if attempt:  # it had committed before the connection broke
                    return
                raise
            except psycopg.OperationalError:
                await self._disconnect()
                if attempt:
                    raise
                logger.warning("audit appender: the database connection broke; sending again on a new one")

    async def _connected(self) -> "psycopg.AsyncConnection[Any]":
        if self._connection is None or self._connection.closed or self._connection.broken:
            parameters = connections["default"].get_connection_params()
            parameters.pop("cursor_factory", None)  # Django's, for its own (sync) cursors
            self._connection = await psycopg.AsyncConnection.connect(**parameters, autocommit=True)
        return self._connection

    async def _disconnect(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None


@cache
def columns_insert_statement() -> str:
    """The INSERT of any number of rows: each column's values travel as one array parameter,
    zipped back into rows by `unnest`. Its text and its parameters' count are the same for
    every batch, so the driver parses it once and the server plans it once (a multi-row
    VALUES list would be a new statement for each batch size, parsed again every time)."""
    fields = insert_fields()
    columns = ", ".join(connection.ops.quote_name(str(field.column)) for field in fields)
    arrays = ", ".join(f"%b::{_array_type(field)}" for field in fields)
    return f"INSERT INTO {AuditEvent._meta.db_table} ({columns}) SELECT * FROM unnest({arrays})"  # noqa: S608


def _array_type(field: Any) -> str:
    # `varchar(n)[]` would cut a long value to n characters; the bare type lets the column's
    # own length refuse it, as a single-row INSERT does.
    return re.sub(r"\(\d+\)$", "", str(field.db_type(connection))) + "[]"


def _settle(batch: list[tuple[tuple[Any, ...], asyncio.Future[None]]], error: BaseException | None) -> None:
    for _, future in batch:
        if future.done():  # its caller was cancelled; the row was written all the same
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)

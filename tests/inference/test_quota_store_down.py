"""Token quotas fail closed when the SQL ledger's database cannot answer, as with Redis.

The embedded default keeps quota counters in the database (accounts.quotas.sql_ledger). If
that store fails (the database is away, locked, the connection dropped) while the rest of
the request could go on, the chat is refused `unavailable` (HTTP 503) and nothing runs:
a quota nobody can count is not a quota anyone may spend. The fault is injected at the
database cursor, for the ledger's tables only, on every thread.
"""

from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.db import OperationalError
from django.db.backends.utils import CursorWrapper
from django.test import AsyncClient

from accounts.models import QuotaCounter, QuotaLease, QuotaPolicy, User
from accounts.quotas.ledger import CounterSpec, LedgerUnavailable
from accounts.quotas.sql_ledger import SqlQuotaLedger
from accounts.services.quotas import QuotaRefused, quota_admit
from audit.models import AuditEvent
from inference.models import ModelVersion
from tests.inference.websocket import access_token, chat_frame, communicator_for, frames_until_end

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("inference_backend")]

UNAVAILABLE = "Quotas cannot be checked right now, so the request was not run; try again shortly."
_LEDGER_TABLES = (QuotaCounter._meta.db_table, QuotaLease._meta.db_table)


@pytest.fixture
def ledger_store_down(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every statement on the ledger's tables fails as a database that went away does.

    Quotas are kept by the SQL ledger in either profile (production would use Redis).
    Returns the statements refused, so a test can show the ledger was really asked.
    """
    refused: list[str] = []
    execute, executemany = CursorWrapper.execute, CursorWrapper.executemany

    def guard(sql: str) -> None:
        if any(table in sql for table in _LEDGER_TABLES):
            refused.append(sql)
            raise OperationalError("could not connect to server: Connection refused")

    def failing_execute(self: CursorWrapper, sql: str, params: Any = None) -> Any:
        guard(sql)
        return execute(self, sql, params)

    def failing_executemany(self: CursorWrapper, sql: str, param_list: Any) -> Any:
        guard(sql)
        return executemany(self, sql, param_list)

    monkeypatch.setattr("accounts.services.quotas.quota_ledger", SqlQuotaLedger)
    monkeypatch.setattr(CursorWrapper, "execute", failing_execute)
    monkeypatch.setattr(CursorWrapper, "executemany", failing_executemany)
    return refused


def _token_policy(user: User) -> None:
    QuotaPolicy.objects.create(name=f"{user}-tokens", user=user, tokens_per_day=100_000)


def _nothing_ran() -> bool:
    return not AuditEvent.objects.filter(action="inference.completed").exists()


def test_the_sql_ledger_reports_its_store_unavailable(db: None, ledger_store_down: list[str]) -> None:
    ledger = SqlQuotaLedger()
    counter = CounterSpec(key="tokens:day:test", limit=10, ttl_seconds=60)
    with pytest.raises(LedgerUnavailable):
        ledger.reserve(counters=[counter], amount=1, lease_seconds=60)
    with pytest.raises(LedgerUnavailable):
        ledger.used(key=counter.key)
    assert ledger_store_down


def test_token_quotas_fail_closed_with_the_sql_ledger_down(
    bob: User, settings: Any, ledger_store_down: list[str]
) -> None:
    _token_policy(bob)
    settings.GATEHOUSE_RATE_LIMIT_FAIL_OPEN = True  # only request rates may fail open, never tokens
    with pytest.raises(QuotaRefused) as refused:
        quota_admit(user=bob, api_key=None, token_estimate=10, lease_seconds=60)
    assert (refused.value.status, refused.value.code, refused.value.message) == (
        503,
        "unavailable",
        UNAVAILABLE,
    )
    assert ledger_store_down


async def test_a_websocket_chat_is_refused_unavailable_and_nothing_runs(
    bob: User, demo_version: ModelVersion, ledger_store_down: list[str]
) -> None:
    await database_sync_to_async(_token_policy)(bob)
    communicator = communicator_for(token=await access_token(bob))
    connected, _ = await communicator.connect()
    assert connected
    await communicator.send_json_to(chat_frame("q1"))
    frames = await frames_until_end(communicator, "q1")
    await communicator.disconnect()
    assert frames == [{"type": "error", "id": "q1", "code": "unavailable", "message": UNAVAILABLE}]
    assert ledger_store_down
    assert await database_sync_to_async(_nothing_ran)()


async def test_an_api_chat_is_refused_503_and_nothing_runs(
    bob: User, demo_version: ModelVersion, ledger_store_down: list[str]
) -> None:
    await database_sync_to_async(_token_policy)(bob)
    response = await AsyncClient().post(
        "/v1/chat/completions",
        {"model": "demo-tiny", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4},
        content_type="application/json",
        headers={"Authorization": f"Bearer {await access_token(bob)}"},
    )
    assert response.status_code == 503, response.content
    error = response.json()["error"]
    assert (error["code"], error["message"]) == ("unavailable", UNAVAILABLE)
    assert ledger_store_down
    assert await database_sync_to_async(_nothing_ran)()

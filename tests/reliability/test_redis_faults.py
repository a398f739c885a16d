"""Redis crashes mid-stream and comes back: clients told promptly, quota settled, all audited.

Redis is the production profile's channel layer, cache, Celery broker and quota store, so
its loss cuts a streaming generation off from its client. The stack runs on a Redis of
the test's own (durable, as deploy/compose.yaml runs it), which the test SIGKILLs while a
websocket chat and an SSE completion stream, then starts again on the same files.

Promised: each client gets an error or a close while Redis is still down (no hang until it
is back; how long it took is recorded as a figure, not asserted); each aborted
generation is on the audit trail; the token reservations are settled with what was used or
given back, so the quota counter ends equal to what the records charged (no leak, no loss);
and once Redis is back the stack is ready and serves chats again.
"""

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.e2e.server import ServedGatehouse, free_port, serve
from tests.faults import RedisServer
from tests.reliability.artifacts import figures_write

pytestmark = pytest.mark.reliability

# How long the test waits for the clients to hear that their streams are lost before it
# fails as hung (a bound on the wait, not an assertion on how long it took).
PROMPTLY_SECONDS = 10.0
STALL_TIMEOUT_SECONDS = 3


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(port=free_port(), directory=tmp_path / "redis", durable=True)
    server.directory.mkdir()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def gatehouse_on(redis_server: RedisServer, tmp_path: Path) -> Iterator[ServedGatehouse]:
    served, stop = serve(
        tmp_path / "stack",
        extra_env={
            "REDIS_URL": redis_server.url,
            "CELERY_BROKER_URL": redis_server.url,
            "GATEHOUSE_GENERATION_STALL_TIMEOUT": str(STALL_TIMEOUT_SECONDS),
        },
    )
    try:
        yield served
    finally:
        stop()


CHAT = {"model": "demo-tiny", "max_tokens": 256, "temperature": 0}


def _quota_policy(served: ServedGatehouse) -> None:
    served.manage(
        "shell",
        "-c",
        "from accounts.models import QuotaPolicy, User; "
        f"QuotaPolicy.objects.create(name='redis-faults', user=User.objects.get(username='{served.admin_username}'), "
        "tokens_per_day=1000000)",
    )


def _ledger_and_records(served: ServedGatehouse) -> dict[str, Any]:
    """The admin's daily token counter and what the trail's inference records charged."""
    script = (
        "import json; from audit.models import AuditEvent as E; from accounts.models import User; "
        "from accounts.quotas.plan import quota_plan_for; from accounts.services.quotas import quota_ledger; "
        f"user = User.objects.get(username='{served.admin_username}'); "
        "(limit,) = quota_plan_for(user=user, api_key=None).tokens; "
        "records = [dict(e.metadata, action=e.action) for e in E.objects.filter(action__startswith='inference.')]; "
        "print(json.dumps({'used': quota_ledger().used(key=limit.spec.key), 'records': records}))"
    )
    return dict(json.loads(served.manage("shell", "-c", script).strip().splitlines()[-1]))


async def _websocket_chat_until_lost(
    served: ServedGatehouse, token: str, started: asyncio.Event
) -> dict[str, Any]:
    """Chat until the stream ends; what ended it and how long after Redis went."""
    headers = {"Authorization": f"Bearer {token}", "X-Request-ID": "redis-fault-ws"}
    async with websockets.connect(served.ws_url, additional_headers=headers) as ws:
        await ws.send(
            json.dumps({"type": "chat", "id": "ws", **CHAT, "messages": [{"role": "user", "content": "Hi"}]})
        )
        tokens = 0
        while True:
            try:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 60))
            except websockets.ConnectionClosed as closed:
                return {
                    "ended": f"closed {closed.rcvd.code if closed.rcvd else 'without a frame'}",
                    "tokens": tokens,
                }
            if frame["type"] == "token":
                tokens += 1
                started.set()
            elif frame["type"] in ("error", "done"):
                return {
                    "ended": f"{frame['type']} {frame.get('code') or frame.get('finish_reason')}",
                    "tokens": tokens,
                }


async def _sse_until_lost(served: ServedGatehouse, token: str, started: asyncio.Event) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}", "X-Request-ID": "redis-fault-sse"}
    body = {**CHAT, "stream": True, "messages": [{"role": "user", "content": "Hi"}]}
    tokens = 0
    async with (
        httpx.AsyncClient(timeout=60) as client,
        client.stream("POST", f"{served.base_url}/v1/chat/completions", json=body, headers=headers) as stream,
    ):
        assert stream.status_code == 200
        async for line in stream.aiter_lines():
            if not line.startswith("data: "):
                continue
            data = line.removeprefix("data: ")
            if data == "[DONE]":
                return {"ended": "done", "tokens": tokens}
            chunk = json.loads(data)
            if "error" in chunk:
                return {"ended": f"error {chunk['error']['code']}", "tokens": tokens}
            if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                tokens += 1
                started.set()
    return {"ended": "stream closed", "tokens": tokens}


def test_redis_lost_mid_stream_tells_clients_settles_quota_and_recovers(
    gatehouse_on: ServedGatehouse, redis_server: RedisServer
) -> None:
    served = gatehouse_on
    _quota_policy(served)
    token = served.admin_token()

    async def run() -> tuple[list[dict[str, Any]], float]:
        ws_started, sse_started = asyncio.Event(), asyncio.Event()
        clients = [
            asyncio.create_task(_websocket_chat_until_lost(served, token, ws_started)),
            asyncio.create_task(_sse_until_lost(served, token, sse_started)),
        ]
        await asyncio.wait_for(asyncio.gather(ws_started.wait(), sse_started.wait()), 60)
        redis_server.stop()
        lost_at = time.monotonic()
        ended = await asyncio.wait_for(asyncio.gather(*clients), PROMPTLY_SECONDS + 20)
        return list(ended), time.monotonic() - lost_at

    # Both clients were told while Redis was still down: it is started again only below.
    ended, waited = asyncio.run(run())
    for outcome in ended:
        assert outcome["ended"] != "done", f"a stream finished as if nothing happened: {outcome}"
        assert outcome["tokens"] < 256

    redis_server.start()
    deadline = time.monotonic() + 60
    while httpx.get(f"{served.base_url}/readyz", timeout=10).status_code != 200:
        assert time.monotonic() < deadline, "the stack did not become ready after Redis came back"
        time.sleep(0.5)

    # Both aborted generations are on the trail, and the counter holds exactly what they charged.
    deadline = time.monotonic() + 60
    while True:
        state = _ledger_and_records(served)
        generations = {record.get("generation_id") for record in state["records"]}
        charged = sum(
            int(record.get("prompt_tokens") or 0) + int(record.get("completion_tokens") or 0)
            for record in state["records"]
        )
        if len(generations) >= 2 and state["used"] == charged:
            break
        assert time.monotonic() < deadline, f"quota and trail disagree: {state}"
        time.sleep(1)
    assert all(record["action"] == "inference.failed" for record in state["records"]), state["records"]
    figures_write(
        "redis-lost-mid-stream",
        {
            "clients_told_after_s": round(waited, 3),
            "client_outcomes": ended,
            "audit_records": len(state["records"]),
            "generations_audited": len(generations),
            "tokens_charged_by_records": charged,
            "quota_counter_after_recovery": state["used"],
        },
    )

    # Served again: a chat runs to its end.
    body = {**CHAT, "max_tokens": 8, "messages": [{"role": "user", "content": "Back?"}]}
    again = httpx.post(
        f"{served.base_url}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    assert again.status_code == 200, again.text
    assert again.json()["usage"]["completion_tokens"] == 8

"""A bounded soak: minutes of mixed traffic against a served production stack.

Several virtual users loop over SSE, whole and websocket chats, cheap reads, and key
creation and revocation, each request with a request id of its own. Promised: no request
fails; every audited request is on the trail exactly once (counted by request id against
what the load client did); and the server's and worker's memory stays flat (no growth
past warm-up beyond noise). GATEHOUSE_SOAK_SECONDS sets the length (`make test-reliability`
passes SOAK_SECONDS).
"""

import asyncio
import itertools
import json
import os
import random
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
import websockets

from tests.e2e.server import ServedGatehouse, serve
from tests.reliability.artifacts import figures_write
from tests.reliability.processes import process_rss_kib

pytestmark = pytest.mark.reliability

SOAK_SECONDS = float(os.environ.get("GATEHOUSE_SOAK_SECONDS", "120"))
VIRTUAL_USERS = 6
SAMPLE_EVERY_SECONDS = 2.0
# Past warm-up, resident memory may move by this much without it being a leak (allocator noise,
# caches reaching their size); a leak of a few kilobytes a request passes it in a minute.
FLAT_MEMORY_SLACK_MIB = 24.0
CHAT = {
    "model": "demo-tiny",
    "max_tokens": 8,
    "temperature": 0,
    "messages": [{"role": "user", "content": "Soak."}],
}


@pytest.fixture(scope="module")
def soaked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedGatehouse]:
    served, stop = serve(
        tmp_path_factory.mktemp("soak"),
        worker_concurrency=4,
        extra_env={"GATEHOUSE_MAX_CONCURRENT_CHATS_PER_USER": "64"},
    )
    yield served
    stop()


class Load:
    """The load client: what it did, what failed, and the request ids that should be audited."""

    def __init__(self, served: ServedGatehouse, token: str, key: str) -> None:
        self.served, self.token, self.key = served, token, key
        self.done: Counter[str] = Counter()
        self.errors: list[str] = []
        # request id -> the audit action it must produce
        self.audited: dict[str, str] = {}
        self._ids = itertools.count()

    def request_id(self) -> str:
        return f"soak-{next(self._ids)}"

    async def sse_chat(self, client: httpx.AsyncClient) -> None:
        rid = self.request_id()
        async with client.stream(
            "POST", "/v1/chat/completions", json={**CHAT, "stream": True}, headers=self._key(rid)
        ) as stream:
            text = "".join([part async for part in stream.aiter_text()])
            if stream.status_code != 200 or "[DONE]" not in text:
                raise AssertionError(f"SSE {stream.status_code}: {text[-200:]}")
        self.audited[rid] = "inference.completed"

    async def whole_chat(self, client: httpx.AsyncClient) -> None:
        rid = self.request_id()
        answer = await client.post("/v1/chat/completions", json=CHAT, headers=self._key(rid))
        if answer.status_code != 200 or answer.json()["usage"]["completion_tokens"] != 8:
            raise AssertionError(f"chat {answer.status_code}: {answer.text[:200]}")
        self.audited[rid] = "inference.completed"

    async def websocket_chat(self, client: httpx.AsyncClient) -> None:
        rid = self.request_id()
        async with websockets.connect(self.served.ws_url, additional_headers=self._key(rid)) as ws:
            await ws.send(json.dumps({"type": "chat", "id": "s", **CHAT}))
            while (frame := json.loads(await asyncio.wait_for(ws.recv(), 60)))["type"] not in (
                "done",
                "error",
            ):
                pass
        if frame["type"] != "done":
            raise AssertionError(f"websocket: {frame}")
        self.audited[rid] = "inference.completed"

    async def read_models(self, client: httpx.AsyncClient) -> None:
        answer = await client.get("/v1/models", headers=self._key(self.request_id()))
        if answer.status_code != 200:
            raise AssertionError(f"models {answer.status_code}")

    async def read_usage(self, client: httpx.AsyncClient) -> None:
        answer = await client.get("/api/usage/", headers=self._jwt(self.request_id()))
        if answer.status_code != 200:
            raise AssertionError(f"usage {answer.status_code}")

    async def key_lifecycle(self, client: httpx.AsyncClient) -> None:
        created_id, revoked_id = self.request_id(), self.request_id()
        created = await client.post(
            "/api/keys/", json={"name": "soak", "scopes": ["models:read"]}, headers=self._jwt(created_id)
        )
        if created.status_code != 201:
            raise AssertionError(f"key {created.status_code}: {created.text[:200]}")
        self.audited[created_id] = "apikey.created"
        revoked = await client.delete(f"/api/keys/{created.json()['id']}/", headers=self._jwt(revoked_id))
        if revoked.status_code != 204:
            raise AssertionError(f"revoke {revoked.status_code}")
        self.audited[revoked_id] = "apikey.revoked"

    def _key(self, rid: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}", "X-Request-ID": rid}

    def _jwt(self, rid: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "X-Request-ID": rid}

    def operations(self) -> list[Callable[[httpx.AsyncClient], Awaitable[None]]]:
        """The traffic mix: reads three times as often as anything else."""
        return [
            self.sse_chat, self.whole_chat, self.websocket_chat,
            self.read_models, self.read_models, self.read_models, self.read_usage, self.key_lifecycle,
        ]  # fmt: skip

    async def attempt(
        self, operation: Callable[[httpx.AsyncClient], Awaitable[None]], client: httpx.AsyncClient
    ) -> None:
        try:
            await operation(client)
        except Exception as error:  # noqa: BLE001 - every failure is counted and reported
            self.errors.append(f"{operation.__name__}: {error!r}"[:300])
        else:
            self.done[operation.__name__] += 1

    async def warm_up(self) -> None:
        """Each operation once, before the clock starts: the worker loads its model, pools fill."""
        async with httpx.AsyncClient(base_url=self.served.base_url, timeout=60) as client:
            for operation in dict.fromkeys(self.operations()):
                await self.attempt(operation, client)

    async def virtual_user(self, seed: int, until: float) -> None:
        mix = self.operations()
        chooser = random.Random(seed)  # noqa: S311 - a reproducible traffic mix, not a secret
        async with httpx.AsyncClient(base_url=self.served.base_url, timeout=60) as client:
            while time.monotonic() < until:
                await self.attempt(chooser.choice(mix), client)


async def _sample_memory(pids: dict[str, int], samples: dict[str, list[float]], until: float) -> None:
    while time.monotonic() < until:
        for name, pid in pids.items():
            samples[name].append(process_rss_kib(pid) / 1024)
        await asyncio.sleep(SAMPLE_EVERY_SECONDS)


def _audited_on_the_trail(served: ServedGatehouse) -> dict[str, list[str]]:
    script = (
        "import json; from audit.models import AuditEvent as E; "
        "print(json.dumps({rid: [a for (r, a) in rows if r == rid] for rows in "
        "[list(E.objects.filter(request_id__startswith='soak-').values_list('request_id', 'action'))] "
        "for rid in {r for (r, _) in rows}}))"
    )
    return dict(json.loads(served.manage("shell", "-c", script).strip().splitlines()[-1]))


def test_minutes_of_mixed_traffic_lose_nothing_and_memory_stays_flat(soaked: ServedGatehouse) -> None:
    token = soaked.admin_token()
    key = httpx.post(
        f"{soaked.base_url}/api/keys/",
        json={"name": "soak-load", "scopes": ["chat", "models:read"]},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    ).json()["key"]
    load = Load(soaked, token, key)
    pids = {"server": soaked.processes[-1].pid, "worker": soaked.processes[0].pid}
    samples: dict[str, list[float]] = {name: [] for name in pids}

    async def run() -> float:
        await load.warm_up()
        load.done.clear()  # the figures are the timed window's; warm-up errors and records still count
        started = time.monotonic()
        until = started + SOAK_SECONDS
        await asyncio.gather(
            _sample_memory(pids, samples, until),
            *(load.virtual_user(seed, until) for seed in range(VIRTUAL_USERS)),
        )
        return time.monotonic() - started

    elapsed = asyncio.run(run())

    # The trail is written before each answer is sent; give the last records a moment anyway.
    deadline = time.monotonic() + 30
    while len(trail := _audited_on_the_trail(soaked)) < len(load.audited) and time.monotonic() < deadline:
        time.sleep(1)
    missing = [rid for rid in load.audited if load.audited[rid] not in trail.get(rid, [])]
    doubled = [rid for rid, actions in trail.items() if len(actions) != 1]

    memory = {name: _flatness(values) for name, values in samples.items()}
    figures = {
        "seconds": round(elapsed, 1),
        "virtual_users": VIRTUAL_USERS,
        "requests": sum(load.done.values()) + len(load.errors),
        "requests_per_second": round((sum(load.done.values()) + len(load.errors)) / elapsed, 1),
        "done": dict(load.done),
        "errors": len(load.errors),
        "first_errors": load.errors[:5],
        "audited_requests": len(load.audited),
        "audit_events_lost": len(missing),
        "audit_events_doubled": len(doubled),
        "memory_mib": memory,
    }
    figures_write("soak", figures)
    assert load.errors == [], figures
    assert sum(load.done[name] for name in ("sse_chat", "whole_chat", "websocket_chat")) > 0
    assert missing == [], f"audit events lost: {missing[:10]}"
    assert doubled == [], f"requests audited more than once: {doubled[:10]}"
    for name, flat in memory.items():
        assert flat["growth_after_warmup"] <= FLAT_MEMORY_SLACK_MIB, f"{name} memory grew: {flat}"


def _flatness(values: list[float]) -> dict[str, Any]:
    """Memory from the end of warm-up (the first quarter) to the end: the median of each."""
    quarter = max(1, len(values) // 4)
    warmed, last = values[quarter : 2 * quarter] or values, values[-quarter:]
    return {
        "samples": len(values),
        "first": round(values[0], 1),
        "after_warmup": round(statistics.median(warmed), 1),
        "last": round(statistics.median(last), 1),
        "peak": round(max(values), 1),
        "growth_after_warmup": round(statistics.median(last) - statistics.median(warmed), 1),
    }

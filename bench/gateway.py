"""P1, P2 and P4: what the gateway costs a request, and what generation costs a cheap one.

P1 and P2 call the same mock OpenAI-compatible upstream (bench.mock_upstream) two ways:
directly, and through Gatehouse with an API key (key check, quota, routing, the upstream
call, usage and the audit record). Both are streamed chat completions read to `[DONE]`, so
the two sides do the same work but for the gateway. P4 times a cheap authenticated GET
(`/v1/models` with the key) while 4 demo-model generations stream, against the same GET idle.
"""

import asyncio
import multiprocessing
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from bench.client import chat_stream
from bench.report import Goal
from tests.e2e.server import REPO_ROOT, ServedGatehouse, free_port

MOCK_MODEL = "mock-upstream"
# SPEC §8.
P1_P50_MS, P1_P99_MS = 3.0, 10.0
P2_GOAL = 0.5
P4_GOAL = 2.0
BODY = {"messages": [{"role": "user", "content": "Benchmark."}], "max_tokens": 16, "stream": True}


@dataclass
class Upstream:
    base_url: str
    latency_ms: float
    chunks: int


@contextmanager
def mock_upstream(*, latency_ms: float = 20, chunks: int = 16) -> Iterator[Upstream]:
    """The mock upstream in its own uvicorn process, on a free loopback port."""
    port = free_port()
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module, fixed arguments
        [sys.executable, "-m", "uvicorn", "bench.mock_upstream:app", "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "warning", "--no-access-log"],
        cwd=REPO_ROOT, env={"MOCK_LATENCY_MS": str(latency_ms), "MOCK_CHUNKS": str(chunks), "PATH": ""},
    )  # fmt: skip
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{base_url}/v1/models", timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError("the mock upstream did not start") from None
            time.sleep(0.1)
    try:
        yield Upstream(base_url=base_url, latency_ms=latency_ms, chunks=chunks)
    finally:
        process.terminate()
        process.wait(timeout=10)


def gateway_prepare(served: ServedGatehouse, upstream: Upstream, token: str) -> str:
    """Register the mock as a remote model, open to all; return an API key for the runs."""
    served.manage(
        "shell", "-c",
        "from inference.services import model_register, model_version_promote; "
        "from inference.services.registry import model_version_register_remote; "
        f"model = model_register(name={MOCK_MODEL!r}, open_to_all=True, actor=None); "
        "version = model_version_register_remote(model=model, label='v1', "
        f"base_url={upstream.base_url + '/v1'!r}, remote_model='mock', actor=None); "
        "model_version_promote(version=version, actor=None)",
    )  # fmt: skip
    created = httpx.post(
        f"{served.base_url}/api/keys/",
        json={"name": "bench", "scopes": ["chat", "models:read"]},
        headers={"Authorization": f"Bearer {token}"},
    )
    created.raise_for_status()
    return str(created.json()["key"])


async def _streamed(
    client: httpx.AsyncClient, url: str, body: dict[str, Any], headers: dict[str, str]
) -> float:
    """Seconds from sending a streamed completion to reading its `[DONE]`."""
    started = time.perf_counter()
    async with client.stream("POST", url, json=body, headers=headers) as response:
        if response.status_code != httpx.codes.OK:
            raise RuntimeError(f"{url} answered {response.status_code}: {(await response.aread())[:200]!r}")
        tail = b""
        async for data in response.aiter_bytes():
            tail = (tail + data)[-32:]
        if b"[DONE]" not in tail:
            raise RuntimeError(f"{url}: the stream ended without [DONE]")
    return time.perf_counter() - started


# A way to call the mock: URL, body, headers.
Side = tuple[str, dict[str, Any], dict[str, str]]


class _Sides:
    """The two ways to the mock: its own URL, and Gatehouse's with the API key."""

    def __init__(self, served: ServedGatehouse, upstream: Upstream, key: str) -> None:
        self.direct: Side = (f"{upstream.base_url}/v1/chat/completions", {**BODY, "model": "mock"}, {})
        self.gateway: Side = (
            f"{served.base_url}/v1/chat/completions",
            {**BODY, "model": MOCK_MODEL},
            {"Authorization": f"Bearer {key}"},
        )


def _percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def measure_p1(served: ServedGatehouse, upstream: Upstream, key: str, *, requests: int) -> Goal:
    goal = Goal(
        id="P1",
        measure="added latency of the stack vs the same mock upstream called directly, concurrency 1",
        goal=f"p50 <= {P1_P50_MS:g} ms, p99 <= {P1_P99_MS:g} ms",
        anchor="LiteLLM adds 4.3 ms p50, 9.8 ms p99",
    )
    sides = _Sides(served, upstream, key)

    async def run() -> tuple[list[float], list[float]]:
        direct, gateway = [], []
        async with httpx.AsyncClient(timeout=60) as client:
            for _ in range(10):  # warm both paths: connections, the engine, caches
                await _streamed(client, *sides.direct)
                await _streamed(client, *sides.gateway)
            for _ in range(requests):  # interleaved: drift hits both sides alike
                direct.append(await _streamed(client, *sides.direct))
                gateway.append(await _streamed(client, *sides.gateway))
        return direct, gateway

    direct, gateway = asyncio.run(run())
    added_p50 = (_percentile(gateway, 0.5) - _percentile(direct, 0.5)) * 1000
    added_p99 = (_percentile(gateway, 0.99) - _percentile(direct, 0.99)) * 1000
    goal.measured = added_p50
    goal.met = added_p50 <= P1_P50_MS and added_p99 <= P1_P99_MS
    goal.details = {
        "unit": "milliseconds added (measured is p50)",
        "added_p50_ms": round(added_p50, 2),
        "added_p99_ms": round(added_p99, 2),
        "direct_p50_ms": round(_percentile(direct, 0.5) * 1000, 2),
        "direct_p99_ms": round(_percentile(direct, 0.99) * 1000, 2),
        "gateway_p50_ms": round(_percentile(gateway, 0.5) * 1000, 2),
        "gateway_p99_ms": round(_percentile(gateway, 0.99) * 1000, 2),
        "requests_each": requests,
        "upstream": f"{upstream.latency_ms:g} ms, then {upstream.chunks} chunks",
    }
    return goal


def _throughput(
    side: tuple[str, dict[str, Any], dict[str, str]], *, concurrency: int, requests: int
) -> float:
    """Completed requests per second with `concurrency` clients sharing `requests` calls."""

    async def run() -> float:
        remaining = requests
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(timeout=120, limits=limits) as client:

            async def worker() -> None:
                nonlocal remaining
                while remaining > 0:
                    remaining -= 1
                    await _streamed(client, *side)

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return requests / (time.perf_counter() - started)

    return asyncio.run(run())


def measure_p2(served: ServedGatehouse, upstream: Upstream, key: str, *, requests: int, rounds: int) -> Goal:
    goal = Goal(
        id="P2",
        measure="throughput at concurrency 16 through the gateway vs direct (the same mock upstream)",
        goal=f">= {P2_GOAL}x direct",
        anchor="LiteLLM (Python) 0.21x, Portkey 0.92x",
    )
    sides = _Sides(served, upstream, key)
    _throughput(sides.gateway, concurrency=16, requests=32)  # warm
    direct, gateway = [], []
    for _ in range(rounds):
        direct.append(_throughput(sides.direct, concurrency=16, requests=requests))
        gateway.append(_throughput(sides.gateway, concurrency=16, requests=requests))
    goal.measured = statistics.median(gateway) / statistics.median(direct)
    goal.met = goal.measured >= P2_GOAL
    goal.details = {
        "direct_requests_per_s": [round(rate, 1) for rate in direct],
        "gateway_requests_per_s": [round(rate, 1) for rate in gateway],
        "requests_per_round": requests,
        "concurrency": 16,
    }
    return goal


def _get_latencies(url: str, key: str, *, requests: int) -> list[float]:
    latencies = []
    with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {key}"}) as client:
        for _ in range(requests):
            started = time.perf_counter()
            response = client.get(url)
            latencies.append(time.perf_counter() - started)
            if response.status_code != httpx.codes.OK:
                raise RuntimeError(f"{url} answered {response.status_code}")
    return latencies


def _four_streams(ws_url: str, token: str, max_tokens: int, stop: Any, tokens: Any) -> None:
    """In a process of its own (so the streams' client work does not slow the timed GETs):
    keep four chats streaming, each that ends replaced at once, until `stop` is set."""

    async def one(slot: int) -> None:
        while not stop.is_set():
            record = await chat_stream(ws_url, token, max_tokens=max_tokens, client_id=f"p4-{slot}")
            with tokens.get_lock():
                tokens.value += record.tokens

    async def four() -> None:
        await asyncio.gather(*(one(slot) for slot in range(4)))

    asyncio.run(four())


def measure_p4(served: ServedGatehouse, token: str, key: str, *, requests: int, max_tokens: int) -> Goal:
    goal = Goal(
        id="P4",
        measure="p99 of a cheap authenticated GET (/v1/models, API key) while 4 generations stream vs idle",
        goal=f"<= {P4_GOAL:g}x",
        anchor="FastChat froze under blocking generate",
    )
    url = f"{served.base_url}/v1/models"
    _get_latencies(url, key, requests=20)  # warm
    idle = _get_latencies(url, key, requests=requests)
    spawn = multiprocessing.get_context("spawn")
    stop, tokens = spawn.Event(), spawn.Value("l", 0)
    streams = spawn.Process(target=_four_streams, args=(served.ws_url, token, max_tokens, stop, tokens))
    streams.start()
    deadline = time.monotonic() + 60
    while tokens.value == 0 and time.monotonic() < deadline:
        time.sleep(0.05)  # until the four are streaming
    before = tokens.value
    busy = _get_latencies(url, key, requests=requests)
    during = tokens.value - before
    stop.set()
    streams.join(timeout=120)
    goal.measured = _percentile(busy, 0.99) / _percentile(idle, 0.99)
    goal.met = goal.measured <= P4_GOAL
    goal.details = {
        "idle_p50_ms": round(_percentile(idle, 0.5) * 1000, 2),
        "idle_p99_ms": round(_percentile(idle, 0.99) * 1000, 2),
        "busy_p50_ms": round(_percentile(busy, 0.5) * 1000, 2),
        "busy_p99_ms": round(_percentile(busy, 0.99) * 1000, 2),
        "requests_each": requests,
        # Proof the generations ran while the busy GETs were timed.
        "tokens_streamed_while_timed": during,
    }
    return goal

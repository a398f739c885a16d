"""The ways to the same mock upstream, measured side by side in one run.

- direct: the mock itself (bench.mock_upstream), the baseline;
- floor: the bare pass-through proxy (bench.floor), the least a Python proxy can add;
- gateway: Gatehouse's /v1/chat/completions with an API key, the mock registered as a remote
  model (key check, quota, routing, the upstream call, usage and the audit record);
- and, at concurrency 1 in production, the governed floor (bench.governed_floor): the floor
  plus the round trips governance cannot skip.

Each is called with the same chat completion, streamed (read to `[DONE]`) or whole
(`"stream": false`, read to its last byte). Latency is timed at concurrency 1 with the sides
interleaved, so drift hits all alike; throughput at concurrency 16, side after side per round,
with the CPU time each server process spent on the round's requests.
"""

import asyncio
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.processes import cpu_seconds

BODY = {"messages": [{"role": "user", "content": "Benchmark."}], "max_tokens": 16}
# After a side's share of a round, before its CPU is read again.
CPU_SETTLE_SECONDS = 0.5


@dataclass
class Side:
    """One way to the mock, and the processes whose CPU its requests cost (none for direct)."""

    name: str
    url: str
    model: str
    headers: dict[str, str] = field(default_factory=dict)
    # Role ("server", "worker") to the root process ids of that role.
    processes: dict[str, list[int]] = field(default_factory=dict)

    def body(self, *, stream: bool) -> dict[str, Any]:
        return {**BODY, "model": self.model, "stream": stream}


async def request_once(client: httpx.AsyncClient, side: Side, *, stream: bool) -> float:
    """Seconds from sending one chat completion to its last byte; raises on a wrong answer."""
    started = time.perf_counter()
    async with client.stream(
        "POST", side.url, json=side.body(stream=stream), headers=side.headers
    ) as response:
        if response.status_code != httpx.codes.OK:
            raise RuntimeError(
                f"{side.name} answered {response.status_code}: {(await response.aread())[:200]!r}"
            )
        if stream:
            tail = b""
            async for data in response.aiter_bytes():
                tail = (tail + data)[-32:]
            if b"[DONE]" not in tail:
                raise RuntimeError(f"{side.name}: the stream ended without [DONE]")
        elif b'"choices"' not in await response.aread():
            raise RuntimeError(f"{side.name}: the whole answer holds no choices")
    return time.perf_counter() - started


def percentile(samples: Sequence[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


@dataclass
class Latency:
    """Concurrency 1: one side's request latencies (milliseconds)."""

    p50_ms: float
    p99_ms: float
    requests: int


@dataclass
class Throughput:
    """Concurrency 16: one side's completed requests per second per round, and the CPU per request."""

    per_s: list[float]
    requests_per_round: int
    # Role to CPU milliseconds per request, over every round (none for direct).
    cpu_ms_per_request: dict[str, float] = field(default_factory=dict)

    @property
    def median_per_s(self) -> float:
        return statistics.median(self.per_s)


def latencies(sides: Sequence[Side], *, stream: bool, requests: int, warm: int = 10) -> dict[str, Latency]:
    """Each side's latency at concurrency 1, the sides taking turns request by request."""

    async def run() -> dict[str, list[float]]:
        samples: dict[str, list[float]] = {side.name: [] for side in sides}
        async with httpx.AsyncClient(timeout=60) as client:
            for _ in range(warm):  # connections, caches, the engine
                for side in sides:
                    await request_once(client, side, stream=stream)
            for _ in range(requests):
                for side in sides:
                    samples[side.name].append(await request_once(client, side, stream=stream))
        return samples

    return {
        name: Latency(
            p50_ms=round(percentile(seconds, 0.5) * 1000, 2),
            p99_ms=round(percentile(seconds, 0.99) * 1000, 2),
            requests=len(seconds),
        )
        for name, seconds in asyncio.run(run()).items()
    }


def _rate(side: Side, *, stream: bool, concurrency: int, requests: int) -> float:
    """Completed requests per second with `concurrency` clients sharing `requests` calls."""

    async def run() -> float:
        remaining = requests
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(timeout=120, limits=limits) as client:

            async def worker() -> None:
                nonlocal remaining
                while remaining > 0:
                    remaining -= 1
                    await request_once(client, side, stream=stream)

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return requests / (time.perf_counter() - started)

    return asyncio.run(run())


def throughputs(
    sides: Sequence[Side], *, stream: bool, requests: int, rounds: int, concurrency: int = 16
) -> dict[str, Throughput]:
    """Each side's throughput at `concurrency`, and its processes' CPU per request.

    A round runs `requests` calls on each side in turn; CPU is read before each side's share
    and CPU_SETTLE_SECONDS after it, so it counts that side's requests, what the server did
    for them after answering, and whatever else it did meanwhile (idle, next to nothing).
    """
    for side in sides:  # warm: connections at this concurrency
        _rate(side, stream=stream, concurrency=concurrency, requests=2 * concurrency)
    rates: dict[str, list[float]] = {side.name: [] for side in sides}
    cpu: dict[str, dict[str, float]] = {side.name: dict.fromkeys(side.processes, 0.0) for side in sides}
    for _ in range(rounds):
        for side in sides:
            before = {role: cpu_seconds(pids) for role, pids in side.processes.items()}
            rates[side.name].append(_rate(side, stream=stream, concurrency=concurrency, requests=requests))
            if side.processes:
                time.sleep(CPU_SETTLE_SECONDS)  # work a server defers past its answers is theirs too
            for role, pids in side.processes.items():
                cpu[side.name][role] += cpu_seconds(pids) - before[role]
    total = requests * rounds
    return {
        side.name: Throughput(
            per_s=[round(rate, 1) for rate in rates[side.name]],
            requests_per_round=requests,
            cpu_ms_per_request={
                role: round(seconds * 1000 / total, 3) for role, seconds in cpu[side.name].items()
            },
        )
        for side in sides
    }

"""P1, P2, P8 and P4: what the gateway costs a request, beside the floor, and what generation
costs a cheap one.

P1, P2 and P8 call the same mock OpenAI-compatible upstream (bench.mock_upstream) three ways
(bench.sides): directly; through the floor, a bare pass-through proxy (bench.floor); and
through Gatehouse with an API key. Streamed answers are read to `[DONE]` and whole ones to
their end, so the sides do the same work but for what stands between client and mock. P4
times a cheap authenticated GET (`/v1/models` with the key) while 4 demo-model generations
stream, against the same GET idle.
"""

import asyncio
import multiprocessing
import secrets
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

from bench.client import chat_stream
from bench.processes import GATEWAY_SERVER_FLAGS, QUIET_SERVER_FLAGS, served_roles, uvicorn_served
from bench.report import Goal, Row
from bench.sides import Latency, Side, Throughput, latencies, percentile, throughputs
from tests.e2e.server import ServedGatehouse

MOCK_MODEL = "mock-upstream"
# P1's side that adds governance's round trips to the floor (bench.governed_floor).
GOVERNED_FLOOR = "governed_floor"
# SPEC §8.
P1_P50_MS, P1_P99_MS = 3.0, 10.0
P2_GOAL = 0.5
P4_GOAL = 2.0
P8_GOAL = 1.5
CONCURRENCY = 16

Figures = TypeVar("Figures", dict[str, Latency], dict[str, Throughput])


@dataclass
class Upstream:
    base_url: str
    latency_ms: float
    chunks: int
    pid: int


@contextmanager
def mock_upstream(*, latency_ms: float = 20, chunks: int = 16) -> Iterator[Upstream]:
    """The mock upstream in its own uvicorn process, on a free loopback port."""
    with uvicorn_served(
        "bench.mock_upstream:app",
        env={"MOCK_LATENCY_MS": str(latency_ms), "MOCK_CHUNKS": str(chunks)},
        flags=QUIET_SERVER_FLAGS,
        ready_path="/v1/models",
    ) as served:
        yield Upstream(base_url=served.base_url, latency_ms=latency_ms, chunks=chunks, pid=served.pid)


@dataclass
class Floor:
    base_url: str
    token: str
    pid: int


@contextmanager
def floor_proxy(
    upstream: Upstream,
    *,
    log: Path,
    workers: int = 1,
    app: str = "bench.floor:app",
    env: Mapping[str, str] | None = None,
) -> Iterator[Floor]:
    """A floor (bench.floor's by default) relaying to `upstream`, served as the gateway is
    (same flags, as many worker processes); `env` adds to the environment it is given."""
    token = secrets.token_urlsafe(24)
    with uvicorn_served(
        app,
        env={
            "FLOOR_UPSTREAM": upstream.base_url,
            "FLOOR_TOKEN": token,
            "WEB_CONCURRENCY": str(workers),
            **(env or {}),
        },
        flags=GATEWAY_SERVER_FLAGS,
        log=log,
    ) as served:
        yield Floor(base_url=served.base_url, token=token, pid=served.pid)


@contextmanager
def governed_floor_proxy(
    upstream: Upstream, *, database_url: str, redis_url: str, log: Path, workers: int = 1
) -> Iterator[Floor]:
    """The governed floor (bench.governed_floor): the floor plus governance's round trips, to
    the stack's own PostgreSQL and Redis, served as the floor is."""
    with floor_proxy(
        upstream,
        log=log,
        workers=workers,
        app="bench.governed_floor:app",
        env={"FLOOR_DATABASE_URL": database_url, "FLOOR_REDIS_URL": redis_url},
    ) as floor:
        yield floor


def mock_model_register(served: ServedGatehouse, upstream: Upstream) -> None:
    """Register the mock as a remote model, open to all, promoted."""
    served.manage(
        "shell", "-c",
        "from inference.services import model_register, model_version_promote; "
        "from inference.services.registry import model_version_register_remote; "
        f"model = model_register(name={MOCK_MODEL!r}, open_to_all=True, actor=None); "
        "version = model_version_register_remote(model=model, label='v1', "
        f"base_url={upstream.base_url + '/v1'!r}, remote_model='mock', actor=None); "
        "model_version_promote(version=version, actor=None)",
    )  # fmt: skip


def api_key_create(served: ServedGatehouse, token: str) -> str:
    """An API key (chat, models:read) for the runs, made by the admin through the API."""
    created = httpx.post(
        f"{served.base_url}/api/keys/",
        json={"name": "bench", "scopes": ["chat", "models:read"]},
        headers={"Authorization": f"Bearer {token}"},
    )
    created.raise_for_status()
    return str(created.json()["key"])


def direct_side(upstream: Upstream) -> Side:
    return Side(name="direct", url=f"{upstream.base_url}/v1/chat/completions", model="mock")


def floor_side(floor: Floor, *, name: str = "floor") -> Side:
    return Side(
        name=name,
        url=f"{floor.base_url}/v1/chat/completions",
        model="mock",
        headers={"Authorization": f"Bearer {floor.token}"},
        processes={"server": [floor.pid]},
    )


def gateway_side(served: ServedGatehouse, key: str) -> Side:
    """Gatehouse with the key; CPU counted for its web server(s) and, apart, its worker(s)."""
    roles = served_roles(served)
    processes = {"server": roles["web"]}
    if roles["worker"]:
        processes["worker"] = roles["worker"]
    return Side(
        name="gateway",
        url=f"{served.base_url}/v1/chat/completions",
        model=MOCK_MODEL,
        headers={"Authorization": f"Bearer {key}"},
        processes=processes,
    )


@dataclass
class SideBySide:
    """The rows' raw figures by side name; None for what the selected goals did not need."""

    streamed_c1: dict[str, Latency] | None = None
    whole_c1: dict[str, Latency] | None = None
    streamed_c16: dict[str, Throughput] | None = None
    whole_c16: dict[str, Throughput] | None = None
    upstream: str = ""
    # Why the governed floor was not timed beside the others, where it was not.
    governed_floor_missing: str | None = None


def side_by_side(
    sides: list[Side],
    upstream: Upstream,
    *,
    latency_requests: int,
    throughput_requests: int,
    rounds: int,
    concurrency_1: bool,
    concurrency_16: bool,
    governed_floor: Side | None = None,
    governed_floor_missing: str | None = None,
) -> SideBySide:
    """Measure the rows: latency at concurrency 1 and/or throughput (with CPU) at 16, both kinds.

    `governed_floor` is timed at concurrency 1 only, taking its turn with the others; where
    there is none, `governed_floor_missing` says why."""
    results = SideBySide(
        upstream=f"{upstream.latency_ms:g} ms, then {upstream.chunks} chunks",
        governed_floor_missing=governed_floor_missing,
    )
    if concurrency_1:
        timed = [*sides, governed_floor] if governed_floor is not None else sides
        results.streamed_c1 = latencies(timed, stream=True, requests=latency_requests)
        results.whole_c1 = latencies(timed, stream=False, requests=latency_requests)
    if concurrency_16:
        kwargs = {"requests": throughput_requests, "rounds": rounds, "concurrency": CONCURRENCY}
        results.streamed_c16 = throughputs(sides, stream=True, **kwargs)
        results.whole_c16 = throughputs(sides, stream=False, **kwargs)
    return results


def _latency_rows(kind: str, figures: dict[str, Latency], goals: tuple[str, str]) -> list[Row]:
    def value(side: str, name: str) -> float | None:
        return getattr(figures[side], name) if side in figures else None

    return [
        Row(measure=f"{kind}, concurrency 1: {name[:3]}", unit="ms", direct=value("direct", name),
            floor=value("floor", name), gateway=value("gateway", name), versus="added", goal=goal)
        for name, goal in zip(("p50_ms", "p99_ms"), goals, strict=True)
    ]  # fmt: skip


def _throughput_row(kind: str, figures: dict[str, Throughput], goal: str) -> Row:
    def value(side: str) -> float | None:
        return figures[side].median_per_s if side in figures else None

    return Row(
        measure=f"{kind}, concurrency {CONCURRENCY}: throughput (median of rounds)",
        unit="requests/s",
        direct=value("direct"),
        floor=value("floor"),
        gateway=value("gateway"),
        versus="ratio",
        goal=goal,
    )


def _cpu(figures: dict[str, Throughput], side: str, role: str = "server") -> float | None:
    return figures[side].cpu_ms_per_request.get(role) if side in figures else None


def _cpu_rows(kind: str, figures: dict[str, Throughput], goal: str) -> list[Row]:
    """The web server's CPU beside the floor's; the worker's apart (production only)."""
    rows = [
        Row(measure=f"{kind}, concurrency {CONCURRENCY}: server CPU per request", unit="ms",
            floor=_cpu(figures, "floor"), gateway=_cpu(figures, "gateway"), versus="floor", goal=goal),
    ]  # fmt: skip
    worker = _cpu(figures, "gateway", "worker")
    if worker is not None:
        rows.append(
            Row(measure=f"{kind}, concurrency {CONCURRENCY}: Celery worker CPU per request (not on the "
                "remote path)", unit="ms", gateway=worker)
        )  # fmt: skip
    return rows


def side_by_side_rows(results: SideBySide) -> list[Row]:
    """The report's rows, in the order the issue lists them."""
    rows: list[Row] = []
    p1 = (f"P1: <= +{P1_P50_MS:g} ms", f"P1: <= +{P1_P99_MS:g} ms")
    if results.streamed_c1 is not None:
        rows += _latency_rows("streamed", results.streamed_c1, p1)
    if results.streamed_c16 is not None:
        rows.append(_throughput_row("streamed", results.streamed_c16, f"P2: >= {P2_GOAL:g}x"))
    if results.whole_c16 is not None:
        rows.append(_throughput_row("whole", results.whole_c16, f"P2: >= {P2_GOAL:g}x"))
    if results.whole_c1 is not None:
        rows += _latency_rows("whole", results.whole_c1, ("", ""))
    if results.streamed_c16 is not None:
        rows += _cpu_rows("streamed", results.streamed_c16, f"P8: <= {P8_GOAL:g}x floor")
    if results.whole_c16 is not None:
        rows += _cpu_rows("whole", results.whole_c16, "")
    return rows


def _needed(figures: Figures | None, goal: str) -> Figures:
    if figures is None:
        raise RuntimeError(f"{goal}'s rows were not measured")
    return figures


def _added(figures: dict[str, Latency], side: str, name: str) -> float:
    added: float = getattr(figures[side], name) - getattr(figures["direct"], name)
    return round(added, 2)


def goal_p1(results: SideBySide) -> Goal:
    """P1 on the streamed row at concurrency 1; the whole row and the floor's are details."""
    streamed, whole = _needed(results.streamed_c1, "P1"), _needed(results.whole_c1, "P1")
    added_p50, added_p99 = _added(streamed, "gateway", "p50_ms"), _added(streamed, "gateway", "p99_ms")
    return Goal(
        id="P1",
        measure="added latency of the stack vs the same mock upstream called directly, streamed, "
        "concurrency 1 (ms, p50)",
        goal=f"p50 <= {P1_P50_MS:g} ms, p99 <= {P1_P99_MS:g} ms",
        anchor="LiteLLM adds 4.3 ms p50, 9.8 ms p99",
        measured=added_p50,
        met=added_p50 <= P1_P50_MS and added_p99 <= P1_P99_MS,
        details={
            "unit": "milliseconds added (measured is p50)",
            "added_p50_ms": added_p50,
            "added_p99_ms": added_p99,
            **{f"{side}_{name}": getattr(streamed[side], name) for side in streamed for name in ("p50_ms", "p99_ms")},
            "floor_added_p50_ms": _added(streamed, "floor", "p50_ms"),
            "floor_added_p99_ms": _added(streamed, "floor", "p99_ms"),
            "whole": {
                "gateway_added_p50_ms": _added(whole, "gateway", "p50_ms"),
                "gateway_added_p99_ms": _added(whole, "gateway", "p99_ms"),
                "floor_added_p50_ms": _added(whole, "floor", "p50_ms"),
                "floor_added_p99_ms": _added(whole, "floor", "p99_ms"),
                **{side: asdict(figures) for side, figures in whole.items()},
            },
            "governed_floor": _governed_floor_details(streamed, whole, missing=results.governed_floor_missing),
            "requests_each": streamed["gateway"].requests,
            "upstream": results.upstream,
        },
    )  # fmt: skip


def _governed_floor_details(
    streamed: dict[str, Latency], whole: dict[str, Latency], *, missing: str | None
) -> dict[str, object]:
    """What the governed floor added (bench.governed_floor), and the gateway over it."""
    if GOVERNED_FLOOR not in streamed:
        return {"not_measured": missing or "not served"}
    return {
        "added_p50_ms": _added(streamed, GOVERNED_FLOOR, "p50_ms"),
        "added_p99_ms": _added(streamed, GOVERNED_FLOOR, "p99_ms"),
        "gateway_over_it_p50_ms": round(streamed["gateway"].p50_ms - streamed[GOVERNED_FLOOR].p50_ms, 2),
        "whole_added_p50_ms": _added(whole, GOVERNED_FLOOR, "p50_ms"),
        "whole_gateway_over_it_p50_ms": round(whole["gateway"].p50_ms - whole[GOVERNED_FLOOR].p50_ms, 2),
    }


def _ratio(figures: dict[str, Throughput], side: str) -> float:
    return figures[side].median_per_s / figures["direct"].median_per_s


def goals_p2(results: SideBySide) -> list[Goal]:
    """P2a streamed and P2b whole: gateway throughput at concurrency 16 over direct's."""
    goals = []
    for suffix, kind, measured in (
        ("a", "streamed", results.streamed_c16),
        ("b", "whole", results.whole_c16),
    ):
        figures = _needed(measured, "P2")
        ratio = _ratio(figures, "gateway")
        goals.append(
            Goal(
                id=f"P2{suffix}",
                measure=f"throughput at concurrency {CONCURRENCY} through the gateway vs direct, "
                f"{kind} answers (the same mock upstream)",
                goal=f">= {P2_GOAL}x direct",
                anchor="LiteLLM (Python) 0.21x, Portkey 0.92x",
                measured=ratio,
                met=ratio >= P2_GOAL,
                details={
                    **{f"{side}_requests_per_s": figures[side].per_s for side in figures},
                    "floor_ratio": round(_ratio(figures, "floor"), 3),
                    "requests_per_round": figures["gateway"].requests_per_round,
                    "concurrency": CONCURRENCY,
                },
            )
        )
    return goals


def goal_p8(results: SideBySide) -> Goal:
    """P8: the gateway's server CPU per streamed request at concurrency 16 over the floor's."""
    streamed, whole = _needed(results.streamed_c16, "P8"), _needed(results.whole_c16, "P8")
    gateway, floor = _cpu(streamed, "gateway"), _cpu(streamed, "floor")
    ratio = gateway / floor if gateway is not None and floor else None
    return Goal(
        id="P8",
        measure=f"server CPU per streamed gateway request at concurrency {CONCURRENCY} "
        "(process CPU time / requests) vs the floor's",
        goal=f"<= {P8_GOAL:g}x the floor",
        anchor="floor 2.6 ms, LiteLLM 22 ms here",
        measured=ratio,
        met=None if ratio is None else ratio <= P8_GOAL,
        details={
            "unit": "CPU milliseconds per request (user + system, process tree)",
            "streamed": {side: streamed[side].cpu_ms_per_request for side in ("floor", "gateway")},
            "whole": {side: whole[side].cpu_ms_per_request for side in ("floor", "gateway")},
            "whole_ratio": _rounded_ratio(_cpu(whole, "gateway"), _cpu(whole, "floor")),
            "requests": streamed["gateway"].requests_per_round * len(streamed["gateway"].per_s),
        },
    )


def _rounded_ratio(numerator: float | None, denominator: float | None) -> float | None:
    return round(numerator / denominator, 3) if numerator is not None and denominator else None


def _get_latencies(url: str, key: str, *, requests: int, seconds: float = 0.0) -> list[float]:
    """At least `requests` GETs, one after another, for at least `seconds`."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {key}"}) as client:
        while len(latencies) < requests or time.perf_counter() < deadline:
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


def measure_p4(
    served: ServedGatehouse, token: str, key: str, *, requests: int, max_tokens: int, seconds: float
) -> Goal:
    """Idle, then busy: each at least `requests` GETs over at least `seconds`, so that the busy
    ones span the four streams' whole cycle (first tokens, streaming, ends and restarts), however
    fast a GET is."""
    goal = Goal(
        id="P4",
        measure="p99 of a cheap authenticated GET (/v1/models, API key) while 4 generations stream vs idle",
        goal=f"<= {P4_GOAL:g}x",
        anchor="FastChat froze under blocking generate",
    )
    url = f"{served.base_url}/v1/models"
    _get_latencies(url, key, requests=20)  # warm
    idle = _get_latencies(url, key, requests=requests, seconds=seconds)
    spawn = multiprocessing.get_context("spawn")
    stop, tokens = spawn.Event(), spawn.Value("l", 0)
    streams = spawn.Process(target=_four_streams, args=(served.ws_url, token, max_tokens, stop, tokens))
    streams.start()
    deadline = time.monotonic() + 60
    while tokens.value == 0 and time.monotonic() < deadline:
        time.sleep(0.05)  # until the four are streaming
    before = tokens.value
    busy = _get_latencies(url, key, requests=requests, seconds=seconds)
    during = tokens.value - before
    stop.set()
    streams.join(timeout=120)
    goal.measured = percentile(busy, 0.99) / percentile(idle, 0.99)
    # No tokens while the busy GETs were timed: the streams had stopped (their process exited),
    # and "busy" was as idle as the first window.
    goal.met = goal.measured <= P4_GOAL if during else None
    goal.details = {
        "idle_p50_ms": round(percentile(idle, 0.5) * 1000, 2),
        "idle_p99_ms": round(percentile(idle, 0.99) * 1000, 2),
        "busy_p50_ms": round(percentile(busy, 0.5) * 1000, 2),
        "busy_p99_ms": round(percentile(busy, 0.99) * 1000, 2),
        "requests": {"idle": len(idle), "busy": len(busy)},
        "seconds_each_at_least": seconds,
        # Proof the generations ran while the busy GETs were timed.
        "tokens_streamed_while_timed": during,
    }
    if not during:
        goal.details["not_measured"] = (
            f"no tokens streamed while timed (streams exit code {streams.exitcode})"
        )
    return goal

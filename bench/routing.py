"""P10: what routing among deployments adds to a request.

The mock upstream (bench.mock_upstream) is registered twice more, each time as a version with
three deployments of it (three model names on the same server, so the routing is real and the
work the same): once routed by weight, once to the least busy (whose in-flight counts are
Redis round trips in production). Their streamed latency at concurrency 1 is taken beside the
mock called directly and the one-deployment model P1 measures, the sides taking turns.
"""

from bench.gateway import MOCK_MODEL, P1_P50_MS, P1_P99_MS, Upstream
from bench.report import Goal, Row
from bench.sides import Latency, Side, latencies
from tests.e2e.server import ServedGatehouse

WEIGHTED_MODEL = "mock-three-weighted"
LEAST_BUSY_MODEL = "mock-three-least-busy"
DEPLOYMENTS = 3


def routed_models_register(served: ServedGatehouse, upstream: Upstream) -> None:
    """Both three-deployment models, open to all, promoted (the mock answers any model name)."""
    for name, routing in ((WEIGHTED_MODEL, "weighted"), (LEAST_BUSY_MODEL, "least_busy")):
        served.manage(
            "shell", "-c",
            "from inference.services import model_deployment_add, model_register, model_serving_update, "
            "model_version_promote, model_version_stage; "
            "from inference.services.registry import model_version_register_remote; "
            f"model = model_register(name={name!r}, open_to_all=True, actor=None); "
            "version = model_version_register_remote(model=model, label='v1', "
            f"base_url={upstream.base_url + '/v1'!r}, remote_model='mock', actor=None); "
            f"[model_deployment_add(version=version, base_url={upstream.base_url + '/v1'!r}, "
            f"remote_model=f'mock-{{n}}', actor=None) for n in range(2, {DEPLOYMENTS + 1})]; "
            "model_version_stage(version=version, actor=None); model_version_promote(version=version, actor=None); "
            f"model_serving_update(model=model, changes={{'routing': {routing!r}}}, actor=None)",
        )  # fmt: skip


def _routed(gateway: Side, model: str, name: str) -> Side:
    return Side(name=name, url=gateway.url, model=model, headers=gateway.headers, processes=gateway.processes)


def measure_p10(direct: Side, gateway: Side, *, requests: int) -> tuple[Goal, list[Row]]:
    """The routed models' added latency against direct (P1's goal), and against one deployment."""
    assert gateway.model == MOCK_MODEL  # noqa: S101 - the one-deployment model P1 measures
    sides = [
        direct,
        gateway,
        _routed(gateway, WEIGHTED_MODEL, "weighted"),
        _routed(gateway, LEAST_BUSY_MODEL, "least_busy"),
    ]
    figures = latencies(sides, stream=True, requests=requests)

    def added(side: str, name: str, base: str = "direct") -> float:
        difference: float = getattr(figures[side], name) - getattr(figures[base], name)
        return round(difference, 2)

    goal = Goal(
        id="P10",
        measure=f"added latency of the stack with {DEPLOYMENTS} deployments routed by weight vs the same "
        "mock upstream called directly, streamed, concurrency 1 (ms, p50)",
        goal=f"as P1: p50 <= {P1_P50_MS:g} ms, p99 <= {P1_P99_MS:g} ms",
        anchor="LiteLLM's router in front of its proxy",
        measured=added("weighted", "p50_ms"),
        met=added("weighted", "p50_ms") <= P1_P50_MS and added("weighted", "p99_ms") <= P1_P99_MS,
        details={
            "unit": "milliseconds added (measured is p50, by weight)",
            **{
                f"{side}_added_{name}": added(side, name)
                for side in ("gateway", "weighted", "least_busy")
                for name in ("p50_ms", "p99_ms")
            },
            # What routing itself costs: three deployments against one, in the same run.
            **{
                f"{side}_over_one_deployment_{name}": added(side, name, base="gateway")
                for side in ("weighted", "least_busy")
                for name in ("p50_ms", "p99_ms")
            },
            "requests_each": figures["weighted"].requests,
        },
    )
    return goal, _rows(figures)


def _rows(figures: dict[str, Latency]) -> list[Row]:
    goals = {"p50_ms": f"P10: <= +{P1_P50_MS:g} ms", "p99_ms": f"P10: <= +{P1_P99_MS:g} ms"}
    return [
        Row(measure=f"streamed, concurrency 1, {DEPLOYMENTS} deployments {how}: {name[:3]}", unit="ms",
            direct=getattr(figures["direct"], name), gateway=getattr(figures[side], name), versus="added",
            goal=goals[name] if side == "weighted" else "")
        for side, how in (("weighted", "by weight"), ("least_busy", "least busy"))
        for name in ("p50_ms", "p99_ms")
    ]  # fmt: skip

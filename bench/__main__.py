"""`make bench`: serve Gatehouse on loopback, drive it from this process, report SPEC §8 ratios.

Production-like (PostgreSQL, Redis, a Celery worker) when DATABASE_URL and REDIS_URL reach
running servers, the embedded default otherwise; the report says which ran. The gateway's
rows are measured beside the same mock upstream called directly and through the floor, a
bare pass-through proxy (bench.floor); P1's also beside the governed floor in production
(bench.governed_floor). `--goals P1,P2,P8,P9` measures only those goals.
"""

import argparse
import os
import platform
import re
import secrets
import sys
import tempfile
import time
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from pathlib import Path

from bench.audit import audit_probe, goal_p7, goals_p6
from bench.counters import P9_REQUESTS, count_p9, goals_p9, p9_rows
from bench.engine import continuous_engine_eight, engine_batching_compare, structured_output_cost
from bench.gateway import (
    GOVERNED_FLOOR,
    MOCK_MODEL,
    Upstream,
    api_key_create,
    direct_side,
    floor_proxy,
    floor_side,
    gateway_side,
    goal_p1,
    goal_p8,
    goals_p2,
    governed_floor_proxy,
    measure_p4,
    mock_model_register,
    mock_upstream,
    side_by_side,
    side_by_side_rows,
)
from bench.gpu import measure_roofline
from bench.guardrails import measure_p11
from bench.profile import profile_processes
from bench.report import Goal, Row, report_markdown, report_write
from bench.routing import measure_p10, routed_models_register
from bench.sides import Side
from bench.streaming import measure_p3, measure_p5, p5_against_engine
from tests.e2e.server import REPO_ROOT, ServedGatehouse, maintenance_database_url, serve

# Settings as deployed: DEBUG off (no query log, manifest static files), JSON logs. Loopback
# is plain HTTP and the bench's admin logs in by password, so no HTTPS redirect and no
# second factor; the keys are made for the run.
DEPLOYED = {
    "DEBUG": "false",
    "SECRET_KEY": secrets.token_urlsafe(50),
    "JWT_SIGNING_KEY": secrets.token_urlsafe(50),
    "SECURE_SSL_REDIRECT": "false",
    "GATEHOUSE_ADMIN_2FA_REQUIRED": "false",
    # The mock upstream listens on loopback, which DEBUG off refuses unless listed.
    "GATEHOUSE_REMOTE_ALLOWED_HOSTS": "127.0.0.1",
}


def _worker_cpus() -> str:
    """Web and worker share this host, as on one machine deployed: the worker is kept off the
    first CPU this process may use, which it leaves to the web tier (GATEHOUSE_WORKER_CPUS,
    README "Worker CPUs"). With one CPU there is nothing to leave."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    return ",".join(map(str, cpus[1:]))


def _reachable(database_url: str | None, redis_url: str | None) -> bool:
    if not database_url or not redis_url:
        return False
    try:
        import psycopg
        import redis

        # The stack gets a database of its own; the server's maintenance database proves it is up.
        psycopg.connect(maintenance_database_url(database_url), connect_timeout=3).close()
        redis.Redis.from_url(redis_url, socket_connect_timeout=3).ping()
    except Exception:  # noqa: BLE001 - any failure means "not available here"
        return False
    return True


# SPEC §8's goals, and what each needs started beyond the served stack.
GOALS = ("P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8", "P9", "P10", "P11")
SIDE_BY_SIDE = {"P1", "P2", "P8"}  # the mock upstream, the floor, the gateway
API_KEY = {*SIDE_BY_SIDE, "P9", "P4", "P10"}
AUDIT = {"P6", "P7"}


def _goals_parse(text: str) -> set[str]:
    """`P1,P2,P8` (or `p6a`: a goal's family) to the goals' ids; ValueError for an unknown one."""
    chosen = set()
    for part in filter(None, (part.strip().upper() for part in text.split(","))):
        family = re.fullmatch(r"(P\d+)[A-Z]?", part)
        if family is None or family[1] not in GOALS:
            raise ValueError(f"unknown goal {part!r}: the goals are {', '.join(GOALS)}")
        chosen.add(family[1])
    if not chosen:
        raise ValueError("no goal named")
    return chosen


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny settings: checks the harness works")
    parser.add_argument(
        "--embedded", action="store_true", help="serve the embedded default even if servers exist"
    )
    parser.add_argument(
        "--goals",
        default=",".join(GOALS),
        help="measure only these goals, comma-separated (e.g. P1,P2,P8,P9), starting only what "
        "they need; default: all",
    )
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "var" / "bench", help="where the report goes")
    parser.add_argument(
        "--web-workers",
        type=int,
        default=1,
        help="uvicorn worker processes for the gateway and the floor alike (WEB_CONCURRENCY); default 1",
    )
    parser.add_argument(
        "--gpu",
        action="store_true",
        help="the CUDA path (make bench-gpu): the served model and the baselines on the GPU in bf16, "
        "and decode speed against the memory-bandwidth roofline; needs a CUDA device",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample the served processes with py-spy per goal (OUT/profiles)",
    )
    args = parser.parse_args()
    try:
        args.goals = _goals_parse(args.goals)
    except ValueError as error:
        parser.error(str(error))
    if args.gpu:
        import torch

        if not torch.cuda.is_available():
            parser.error("--gpu needs a CUDA device, and torch sees none on this machine")
    return args


@dataclass
class _Run:
    """What every goal's measurement is given: the served stack and the run's settings."""

    served: ServedGatehouse
    selected: set[str]
    quick: bool
    web_workers: int
    production: bool
    workdir: Path
    profiles: Path | None
    token: str
    key: str
    # Where the served model and the baselines run: "cuda" with --gpu.
    device: str

    def profiled(self, name: str, others: dict[str, int] | None = None) -> AbstractContextManager[None]:
        return profile_processes(self.served, name=name, directory=self.profiles, others=others)


def _governed_floor(run: _Run, upstream: Upstream, stack: ExitStack) -> Side | None:
    """P1's governed floor (bench.governed_floor), on the stack's PostgreSQL and Redis; None
    where P1 is not measured or the stack has neither (the embedded configuration)."""
    if "P1" not in run.selected or not run.production:
        return None
    floor = stack.enter_context(
        governed_floor_proxy(
            upstream,
            database_url=run.served.env["DATABASE_URL"],
            redis_url=run.served.env["REDIS_URL"],
            log=run.workdir / "governed-floor.log",
            workers=run.web_workers,
        )
    )
    return floor_side(floor, name=GOVERNED_FLOOR)


def _side_by_side_goals(run: _Run, upstream: Upstream, gateway: Side) -> tuple[list[Goal], list[Row]]:
    """P1, P2 and P8 from one side-by-side run of direct, floor and gateway (and, for P1 in
    production, the governed floor)."""
    with ExitStack() as stack:
        floor = stack.enter_context(
            floor_proxy(upstream, log=run.workdir / "floor.log", workers=run.web_workers)
        )
        governed = _governed_floor(run, upstream, stack)
        others = {"floor": floor.pid, "upstream": upstream.pid}
        if governed is not None:
            others[GOVERNED_FLOOR] = governed.processes["server"][0]
        stack.enter_context(run.profiled("side-by-side", others=others))
        results = side_by_side(
            [direct_side(upstream), floor_side(floor), gateway],
            upstream,
            latency_requests=30 if run.quick else 300,
            throughput_requests=64 if run.quick else 400,
            rounds=1 if run.quick else 3,
            concurrency_1="P1" in run.selected,
            concurrency_16=bool(run.selected & {"P2", "P8"}),
            governed_floor=governed,
            governed_floor_missing=None if governed else "needs PostgreSQL and Redis (production)",
        )
    goals = [goal_p1(results)] if "P1" in run.selected else []
    goals += goals_p2(results) if "P2" in run.selected else []
    goals += [goal_p8(results)] if "P8" in run.selected else []
    return goals, side_by_side_rows(results)


def _gateway_goals(run: _Run) -> tuple[list[Goal], list[Row]]:
    """P1, P2, P8 and P9: the gateway in front of the mock upstream (P9 counted in production only)."""
    goals: list[Goal] = []
    rows: list[Row] = []
    counted = "P9" in run.selected and run.production
    routed = "P10" in run.selected
    if run.selected & SIDE_BY_SIDE or counted or routed:
        with mock_upstream() as upstream:
            mock_model_register(run.served, upstream)
            gateway = gateway_side(run.served, run.key)
            if run.selected & SIDE_BY_SIDE:
                goals, rows = _side_by_side_goals(run, upstream, gateway)
            if routed:
                routed_models_register(run.served, upstream)
                with run.profiled("P10"):
                    p10, p10_rows = measure_p10(
                        direct_side(upstream), gateway, requests=30 if run.quick else 200
                    )
                goals.append(p10)
                rows += p10_rows
            if counted:
                with run.profiled("P9"):
                    p9 = goals_p9(count_p9(run.served, gateway, requests=P9_REQUESTS))
                goals += p9
                rows += p9_rows(p9)
    if "P9" in run.selected and not run.production:
        goals += goals_p9(None, reason="n/a: the embedded configuration has no Redis and no PostgreSQL")
    return goals, rows


def _model_goals(run: _Run) -> list[Goal]:
    """P3, P4 and P5: generation with the demo model, and a cheap GET beside it."""
    max_tokens, rounds, streams = (16, 1, 6) if run.quick else (256, 5, 50)
    model_directory = run.workdir / "models" / "demo-tiny" / "v1"
    goals: list[Goal] = []
    if "P4" in run.selected:
        with run.profiled("P4"):
            goals.append(
                measure_p4(
                    run.served,
                    run.token,
                    run.key,
                    requests=50 if run.quick else 400,
                    max_tokens=max_tokens,
                    seconds=1.0 if run.quick else 5.0,
                )
            )
    if "P3" in run.selected:
        with run.profiled("P3"):
            goals.append(
                measure_p3(
                    base_url=run.served.base_url,
                    ws_url=run.served.ws_url,
                    token=run.token,
                    model_directory=model_directory,
                    max_tokens=max_tokens,
                    rounds=rounds,
                    streams=streams,
                    device=run.device,
                )
            )
    if "P5" in run.selected:
        with (
            continuous_engine_eight(
                model_directory, max_tokens=max(max_tokens // 2, 8), device=run.device
            ) as engine,
            run.profiled("P5"),
        ):
            goals.append(
                measure_p5(
                    ws_url=run.served.ws_url,
                    token=run.token,
                    max_tokens=max(max_tokens // 2, 8),
                    rounds=rounds,
                    engine_eight=engine,
                )
            )
        p5_against_engine(
            goals[-1],
            engine_batching_compare(
                model_directory,
                max_tokens=max(max_tokens // 2, 8),
                rounds=max(rounds // 2, 1),
                device=run.device,
            ),
        )
        goals[-1].details["structured_output"] = structured_output_cost(
            model_directory, max_tokens=max(max_tokens // 2, 8), rounds=max(rounds // 2, 1), device=run.device
        )
    if run.device == "cuda":
        with run.profiled("GPU"):
            goals.append(measure_roofline(workdir=run.workdir, max_tokens=max_tokens, rounds=rounds))
    return goals


def _audit_goals(run: _Run) -> list[Goal]:
    """P6 and P7 from one run of the audit probe."""
    if not run.selected & AUDIT:
        return []
    with run.profiled("P6-P7"):
        figures = audit_probe(
            run.served,
            appends=(200 if run.quick else 2000) if "P6" in run.selected else 0,
            events=5_000 if run.quick else 100_000,
            seconds=30 if run.quick else 180,
            request_path_appends=(1_000 if run.quick else 30_000) if "P7" in run.selected else 0,
        )
    goals = goals_p6(figures) if "P6" in run.selected else []
    return goals + ([goal_p7(figures)] if "P7" in run.selected else [])


def main() -> int:
    args = _arguments()
    selected: set[str] = args.goals
    production = not args.embedded and _reachable(os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL"))
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="gatehouse-bench-"))
    worker_cpus = os.environ.get("GATEHOUSE_WORKER_CPUS", _worker_cpus())
    # One user drives every stream, 50 at once, a connection each: lift the per-user bounds.
    served, stop = serve(
        workdir,
        production=production,
        worker_concurrency=16,
        worker_queues=f"inference.demo-tiny,inference.{MOCK_MODEL},celery",
        extra_env={
            "GATEHOUSE_MAX_CONCURRENT_CHATS_PER_USER": "64",
            "GATEHOUSE_WS_MAX_CONNECTIONS_PER_USER": "64",
            "WEB_CONCURRENCY": str(args.web_workers),
            "GATEHOUSE_WORKER_CPUS": worker_cpus,
            **DEPLOYED,
            **({"GATEHOUSE_DEVICE": "cuda"} if args.gpu else {}),
        },
    )
    try:
        token = served.admin_token()
        run = _Run(
            served=served,
            selected=selected,
            quick=args.quick,
            web_workers=args.web_workers,
            production=production,
            workdir=workdir,
            profiles=args.out / "profiles" if args.profile else None,
            token=token,
            key=api_key_create(served, token) if selected & API_KEY else "",
            device="cuda" if args.gpu else "cpu",
        )
        goals, rows = _gateway_goals(run)
        goals += _model_goals(run) + _audit_goals(run)
        if "P11" in selected:
            goals.append(measure_p11(served))
    finally:
        stop()
    goals.sort(key=lambda goal: goal.id)
    context: dict[str, object] = {
        "configuration": "production-like: PostgreSQL, Redis, Celery worker (16 threads)"
        if production
        else "embedded default: SQLite, in-memory channel layer, in-process executor",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "settings": "quick" if args.quick else "full",
        "web_workers": args.web_workers,
        "worker_cpus": (worker_cpus or "any") if production else "none (no worker)",
        "device": "cuda (bf16)" if args.gpu else "cpu",
        "goals": ",".join(sorted(selected)),
        "duration_s": round(time.perf_counter() - started, 1),
    }
    print(report_markdown(goals, context=context, rows=rows))
    markdown, data = report_write(goals, context=context, directory=args.out, rows=rows)
    print(f"written: {markdown} and {data}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`make bench`: serve Gatehouse on loopback, drive it from this process, report SPEC §8 ratios.

Production-like (PostgreSQL, Redis, a Celery worker) when DATABASE_URL and REDIS_URL reach
running servers, the embedded default otherwise; the report says which ran.
"""

import argparse
import os
import platform
import secrets
import sys
import tempfile
import time
from contextlib import AbstractContextManager
from pathlib import Path
from urllib.parse import urlparse, urlunparse

from bench.audit import measure_p6
from bench.engine import engine_batching_compare
from bench.gateway import MOCK_MODEL, gateway_prepare, measure_p1, measure_p2, measure_p4, mock_upstream
from bench.profile import profile_processes
from bench.report import Goal, report_markdown, report_write
from bench.streaming import measure_p3, measure_p5
from tests.e2e.server import REPO_ROOT, serve

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


def _reachable(database_url: str | None, redis_url: str | None) -> bool:
    if not database_url or not redis_url:
        return False
    try:
        import psycopg
        import redis

        # The stack gets a database of its own; the server's maintenance database proves it is up.
        psycopg.connect(
            urlunparse(urlparse(database_url)._replace(path="/postgres")), connect_timeout=3
        ).close()
        redis.Redis.from_url(redis_url, socket_connect_timeout=3).ping()
    except Exception:  # noqa: BLE001 - any failure means "not available here"
        return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny settings: checks the harness works")
    parser.add_argument(
        "--embedded", action="store_true", help="serve the embedded default even if servers exist"
    )
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "var" / "bench", help="where the report goes")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample the served processes with py-spy per goal (OUT/profiles)",
    )
    args = parser.parse_args()

    production = not args.embedded and _reachable(os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL"))
    max_tokens, rounds, streams = (16, 1, 6) if args.quick else (256, 5, 50)
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="gatehouse-bench-"))
    # One user drives every stream, 50 at once, a connection each: lift the per-user bounds.
    served, stop = serve(
        workdir,
        production=production,
        worker_concurrency=16,
        worker_queues=f"inference.demo-tiny,inference.{MOCK_MODEL},celery",
        extra_env={
            "GATEHOUSE_MAX_CONCURRENT_CHATS_PER_USER": "64",
            "GATEHOUSE_WS_MAX_CONNECTIONS_PER_USER": "64",
            **DEPLOYED,
        },
    )
    try:
        profiles = args.out / "profiles" if args.profile else None

        def profiled(name: str) -> AbstractContextManager[None]:
            return profile_processes(served, name=name, directory=profiles)

        token = served.admin_token()
        model_directory = workdir / "models" / "demo-tiny" / "v1"
        with mock_upstream() as upstream:
            key = gateway_prepare(served, upstream, token)
            with profiled("P1"):
                goals: list[Goal] = [measure_p1(served, upstream, key, requests=30 if args.quick else 300)]
            with profiled("P2"):
                goals.append(
                    measure_p2(
                        served,
                        upstream,
                        key,
                        requests=64 if args.quick else 400,
                        rounds=1 if args.quick else 3,
                    )
                )
        with profiled("P4"):
            goals.append(
                measure_p4(served, token, key, requests=50 if args.quick else 400, max_tokens=max_tokens)
            )
        with profiled("P3"):
            goals.append(
                measure_p3(
                    base_url=served.base_url,
                    ws_url=served.ws_url,
                    token=token,
                    model_directory=model_directory,
                    max_tokens=max_tokens,
                    rounds=rounds,
                    streams=streams,
                )
            )
        with profiled("P5"):
            goals.append(
                measure_p5(
                    ws_url=served.ws_url, token=token, max_tokens=max(max_tokens // 2, 8), rounds=rounds
                )
            )
        goals[-1].details["engine_level"] = engine_batching_compare(
            model_directory, max_tokens=max(max_tokens // 2, 8), rounds=max(rounds // 2, 1)
        )
        with profiled("P6"):
            goals += measure_p6(
                served, appends=200 if args.quick else 2000, events=5_000 if args.quick else 100_000
            )
    finally:
        stop()
    goals.sort(key=lambda goal: goal.id)
    context: dict[str, object] = {
        "configuration": "production-like: PostgreSQL, Redis, Celery worker (16 threads)"
        if production
        else "embedded default: SQLite, in-memory channel layer, in-process executor",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "settings": "quick" if args.quick else "full",
        "duration_s": round(time.perf_counter() - started, 1),
    }
    print(report_markdown(goals, context=context))
    markdown, data = report_write(goals, context=context, directory=args.out)
    print(f"written: {markdown} and {data}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

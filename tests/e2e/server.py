"""Run Gatehouse as `make run` does, in subprocesses, for tests that drive it from outside."""

import itertools
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse, urlunparse

from inference.protocol import SERVER_MAX_FRAME_BYTES
from tests.profile import PRODUCTION, PROFILE

REPO_ROOT = Path(__file__).resolve().parents[2]

_PASSWORD_LINE = re.compile(r"Created admin '(?P<username>[^']+)' with password: (?P<password>\S+)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _with_path(url: str, path: str) -> str:
    return urlunparse(urlparse(url)._replace(path=path))


def maintenance_database_url(database_url: str) -> str:
    """The same server's maintenance database (`postgres`), which is always there: where to
    make or drop a database, read statistics, or write what belongs to no stack."""
    return _with_path(database_url, "/postgres")


@dataclass
class ServedGatehouse:
    base_url: str
    admin_username: str
    admin_password: str
    env: dict[str, str]
    bootstrap_output: str
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http://", "ws://") + "/ws/chat/"

    def admin_token(self) -> str:
        """A JWT access token for the bootstrap admin."""
        request = urllib.request.Request(
            f"{self.base_url}/api/auth/token/",
            data=json.dumps({"username": self.admin_username, "password": self.admin_password}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return str(json.load(response)["access"])

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=REPO_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout


def _wait_until_healthy(
    base_url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited:\n{log.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(f"{base_url}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.2)
    raise RuntimeError(f"the server did not become healthy:\n{log.read_text(errors='replace')}")


# 1, 2, 3...: the how-manieth stack this process serves (Redis databases below the suite's).
_stack_numbers = itertools.count(1)


def _production_env(workdir: Path) -> tuple[dict[str, str], str]:
    """A PostgreSQL database and a Redis database of the e2e run's own."""
    import psycopg
    import redis

    database = f"gatehouse_e2e_{uuid.uuid4().hex[:8]}"
    admin_url = os.environ["DATABASE_URL"]
    with psycopg.connect(maintenance_database_url(admin_url), autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{database}"')
    # The suite itself owns the Redis database in REDIS_URL; each served stack takes one of its
    # own below it. Two stacks on one Redis database would share a broker: one stack's worker
    # would take the other's generations and write their records to the wrong database.
    suite_db = int(urlparse(os.environ["REDIS_URL"]).path.strip("/") or 0)
    redis_url = _with_path(os.environ["REDIS_URL"], f"/{(suite_db - next(_stack_numbers)) % 16}")
    redis.Redis.from_url(redis_url).flushdb()
    return {
        "DATABASE_URL": _with_path(admin_url, f"/{database}"),
        "REDIS_URL": redis_url,
        "GATEHOUSE_INFERENCE_EXECUTOR": "celery",
    }, database


def _drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(maintenance_database_url(os.environ["DATABASE_URL"]), autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def serve(
    workdir: Path,
    *,
    production: bool = PRODUCTION,
    worker_concurrency: int = 2,
    worker_queues: str = "inference.demo-tiny,celery",
    extra_env: dict[str, str] | None = None,
    server_database_port: int | None = None,
) -> tuple[ServedGatehouse, Callable[[], None]]:
    """Migrate, bootstrap and start the server (and a worker in production); returns it and `stop`.

    Production needs DATABASE_URL (a PostgreSQL server it may create databases on) and
    REDIS_URL in the environment; the served stack gets a database of its own. With
    `server_database_port`, the web server (only) reaches that database through a
    loopback proxy on that port (tests.faults.PostgresCutter).
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "GATEHOUSE_INFERENCE_EXECUTOR")
        and not key.startswith("GATEHOUSE_ADMIN_")
    }
    env.update(
        {
            "GATEHOUSE_MODEL_ROOT": str(workdir / "models"),
            "GATEHOUSE_AUDIT_CHECKPOINT_DIR": str(workdir / "audit" / "checkpoints"),
            "GATEHOUSE_AUDIT_SIGNING_KEY_FILE": str(workdir / "audit" / "signing-key.pem"),
            "GATEHOUSE_COMPLIANCE_EXPORT_DIR": str(workdir / "exports"),
            "DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}",
            # One metrics directory for the server and its worker, as on one host (SPEC §8's
            # figures and /metrics's test read what both processes counted).
            "PROMETHEUS_MULTIPROC_DIR": str(workdir / "metrics"),
            # With DEBUG off /metrics answers only a scraper with this token.
            "GATEHOUSE_METRICS_TOKEN": uuid.uuid4().hex,
            # Served with DEBUG off; the tests' fake upstreams listen on loopback.
            "GATEHOUSE_REMOTE_ALLOWED_HOSTS": "127.0.0.1",
            # Marks the stack as the suite's: test hooks (GATEHOUSE_TEST_HOLD_MODELS) are
            # refused with DEBUG off anywhere else.
            "GATEHOUSE_TEST_PROFILE": PROFILE,
        }
    )
    (workdir / "metrics").mkdir(parents=True, exist_ok=True)
    database = None
    if production:
        extra, database = _production_env(workdir)
        env.update(extra)
    env.update(extra_env or {})
    port = free_port()
    served = ServedGatehouse(
        base_url=f"http://127.0.0.1:{port}",
        admin_username="",
        admin_password="",
        env=env,
        bootstrap_output="",
    )

    def stop() -> None:
        for process in served.processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
        if database:
            _drop_database(database)

    try:
        served.manage("migrate", "--noinput")
        served.bootstrap_output = served.manage("bootstrap", "--print-urls", "--base-url", served.base_url)
        match = _PASSWORD_LINE.search(served.bootstrap_output)
        if match is None:
            raise RuntimeError(f"bootstrap printed no admin password:\n{served.bootstrap_output}")
        served.admin_username, served.admin_password = match["username"], match["password"]
        if production:
            worker_log = workdir / "worker.log"
            served.processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "celery", "-A", "gatehouse", "worker", "-Q", worker_queues,
                     "--pool", "threads", "--concurrency", str(worker_concurrency), "--without-gossip", "--without-mingle",
                     "--hostname", f"e2e-{port}@localhost"],
                    cwd=REPO_ROOT, env=env, stdout=worker_log.open("wb"), stderr=subprocess.STDOUT,
                )
            )  # fmt: skip
        server_env = dict(env)
        if server_database_port is not None:
            direct = urlparse(env["DATABASE_URL"])
            credentials = direct.netloc.rpartition("@")[0]
            proxied = direct._replace(netloc=f"{credentials}@127.0.0.1:{server_database_port}")
            server_env["DATABASE_URL"] = urlunparse(proxied)
        server_log = workdir / "server.log"
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "gatehouse.asgi:application", "--host", "127.0.0.1",
             "--port", str(port), "--lifespan", "on", "--timeout-graceful-shutdown", "25",
             "--ws-max-size", str(SERVER_MAX_FRAME_BYTES), "--ws-per-message-deflate", "false"],
            cwd=REPO_ROOT, env=server_env, stdout=server_log.open("wb"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        served.processes.append(server)
        _wait_until_healthy(served.base_url, server, server_log)
    except BaseException:
        stop()
        raise
    return served, stop

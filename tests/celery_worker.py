"""A real Celery worker process for the production profile, pointed at the test database."""

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings


def database_url(database: dict[str, Any]) -> str:
    user = database.get("USER") or ""
    password = f":{database['PASSWORD']}" if database.get("PASSWORD") else ""
    host = database.get("HOST") or "127.0.0.1"
    port = database.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{database['NAME']}"


class CeleryWorker:
    def __init__(
        self,
        *,
        env: dict[str, str],
        log_path: Path,
        queues: str = "inference.demo-tiny,inference.demo-embed,inference.remote-model,inference.remote-embed,celery,compliance",
        name: str = "gatehouse-test",
    ) -> None:
        self.env = env
        self.log_path = log_path
        self.queues = queues
        self.hostname = f"{name}-{os.getpid()}@localhost"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *, timeout: float = 90.0) -> None:
        from gatehouse.celery import app

        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "gatehouse",
                "worker",
                "--queues",
                self.queues,
                "--pool",
                "threads",
                "--concurrency",
                "16",
                "--hostname",
                self.hostname,
                "--loglevel",
                "INFO",
                "--without-gossip",
                "--without-mingle",
            ],
            cwd=settings.BASE_DIR,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the Celery worker exited at start-up:\n{self.log_tail()}")
            if app.control.ping(destination=[self.hostname], timeout=1.0):
                return
        self.stop()
        raise RuntimeError(
            f"the Celery worker did not answer a ping within {timeout:.0f}s:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

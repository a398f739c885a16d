"""Graceful shutdown: SIGTERM ends open streams cleanly and loses no audit record.

Each test serves a stack of its own, since it stops it.
"""

import asyncio
import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import websockets

from tests.e2e.server import ServedGatehouse, serve
from tests.profile import PRODUCTION

LONG_CHAT = {"type": "chat", "id": "long", "model": "demo-tiny", "messages": [{"role": "user", "content": "Hi"}],
             "max_tokens": 400, "temperature": 0}  # fmt: skip


def _long_answers(served: ServedGatehouse) -> None:
    served.manage(
        "shell", "-c",
        "from inference.models import Model; Model.objects.filter(name='demo-tiny').update(max_tokens_cap=400)",
    )  # fmt: skip


def _chat_records(served: ServedGatehouse, client_id: str) -> list[dict[str, Any]]:
    """The chat's inference audit records, once there are any (a Celery worker writes them
    after the web tier has gone, so they may land a moment later)."""
    script = (
        "import json; from audit.models import AuditEvent; "
        "print(json.dumps([e.metadata | {'action': e.action} for e in "
        "AuditEvent.objects.filter(action__startswith='inference.').order_by('sequence')]))"
    )
    deadline = time.monotonic() + 30
    while True:
        records = json.loads(served.manage("shell", "-c", script).strip().splitlines()[-1])
        found = [record for record in records if record.get("client_id") == client_id]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def _process(served: ServedGatehouse, name: str) -> subprocess.Popen[bytes]:
    return next(process for process in served.processes if name in " ".join(map(str, process.args)))  # type: ignore[arg-type]


async def _chat_until_signalled(
    served: ServedGatehouse, token: str, process: subprocess.Popen[bytes]
) -> list[Any]:
    """Start a long chat, send SIGTERM at its first token, return every frame and the close."""
    frames: list[Any] = []
    async with websockets.connect(
        served.ws_url, additional_headers={"Authorization": f"Bearer {token}"}
    ) as ws:
        await ws.send(json.dumps(LONG_CHAT))
        try:
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), timeout=30))
                frames.append(frame)
                if (
                    frame["type"] == "token"
                    and process.returncode is None
                    and not any(isinstance(seen, dict) and seen.get("signalled") for seen in frames)
                ):
                    process.send_signal(signal.SIGTERM)
                    frames.append({"signalled": True})
                if frame["type"] in ("done", "error"):
                    break
        except websockets.exceptions.ConnectionClosed as closed:
            frames.append(("closed", closed.rcvd.code if closed.rcvd else None))
    return frames


def test_sigterm_on_the_web_tier_ends_open_streams_cleanly(tmp_path: Path) -> None:
    served, stop = serve(tmp_path)
    try:
        _long_answers(served)
        server = _process(served, "uvicorn")
        frames = asyncio.run(_chat_until_signalled(served, served.admin_token(), server))
        # The server let go of the stream (a close frame with a code, or the chat's end)...
        last = frames[-1]
        assert (isinstance(last, tuple) and last[1] in (1001, 1012)) or last["type"] in ("done", "error"), (
            frames
        )
        # ...and then exited by itself, well within a pod's grace period. (uvicorn re-raises
        # the signal once it has shut down, so the exit status is SIGTERM's.)
        assert server.wait(timeout=30) in (0, -signal.SIGTERM)
        assert "Finished server process" in (tmp_path / "server.log").read_text()
        # Nothing lost: the chat, cut short or finished, has its one audit record.
        (record,) = _chat_records(served, "long")
        assert record["action"] == "inference.completed"
        assert record["finish_reason"] in ("cancelled", "length")
    finally:
        stop()


@pytest.mark.skipif(not PRODUCTION, reason="Celery workers exist in the production profile")
def test_sigterm_on_a_worker_lets_the_generation_finish(tmp_path: Path) -> None:
    served, stop = serve(tmp_path)
    try:
        _long_answers(served)
        worker = _process(served, "celery")
        frames = asyncio.run(_chat_until_signalled(served, served.admin_token(), worker))
        # A warm shutdown: the generation in flight runs to its end before the worker goes.
        assert frames[-1]["type"] == "done", frames
        assert frames[-1]["finish_reason"] == "length"
        assert frames[-1]["usage"]["completion_tokens"] == 400
        assert worker.wait(timeout=60) in (0, -signal.SIGTERM)
        (record,) = _chat_records(served, "long")
        assert (record["action"], record["finish_reason"]) == ("inference.completed", "length")
    finally:
        stop()

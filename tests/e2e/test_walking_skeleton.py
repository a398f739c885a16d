"""The walking skeleton from outside: what a newcomer does after `make run`.

A real ASGI server process (uvicorn), bootstrapped like `make run`, driven by a plain HTTP
client and the `websockets` library. In the production profile the same stack runs on
PostgreSQL and Redis with a real Celery worker generating.
"""

import asyncio
import json
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
import websockets

from tests.e2e.server import ServedGatehouse

pytestmark = pytest.mark.e2e


def _post_json(url: str, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def _login(gatehouse: ServedGatehouse) -> str:
    status, body = _post_json(
        f"{gatehouse.base_url}/api/auth/token/",
        {"username": gatehouse.admin_username, "password": gatehouse.admin_password},
    )
    assert status == 200, body
    return str(body["access"])


def test_bootstrap_prints_the_urls_and_a_one_time_password(gatehouse: ServedGatehouse) -> None:
    assert f"{gatehouse.base_url}/admin/" in gatehouse.bootstrap_output
    assert f"{gatehouse.base_url}/api/docs/" in gatehouse.bootstrap_output
    assert gatehouse.ws_url in gatehouse.bootstrap_output
    assert len(gatehouse.admin_password) >= 16
    again = gatehouse.manage("bootstrap")
    assert gatehouse.admin_password not in again
    assert "already exists" in again


def test_readyz_is_green(gatehouse: ServedGatehouse) -> None:
    with urllib.request.urlopen(f"{gatehouse.base_url}/readyz", timeout=10) as response:
        assert json.load(response)["status"] == "ok"


def test_wrong_password_is_401(gatehouse: ServedGatehouse) -> None:
    status, body = _post_json(
        f"{gatehouse.base_url}/api/auth/token/", {"username": gatehouse.admin_username, "password": "wrong"}
    )
    assert status == 401
    assert body == {"detail": "Invalid username, password or one-time code."}


async def _chat(gatehouse: ServedGatehouse, token: str) -> list[dict[str, Any]]:
    async with websockets.connect(
        gatehouse.ws_url, additional_headers={"Authorization": f"Bearer {token}"}
    ) as ws:
        await ws.send("{malformed")
        error = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert (error["type"], error["code"]) == ("error", "invalid")
        await ws.send(
            json.dumps(
                {
                    "type": "chat",
                    "id": "e2e",
                    "model": "demo-tiny",
                    "messages": [{"role": "user", "content": "Hello, Gatehouse"}],
                    "max_tokens": 16,
                }
            )
        )
        frames = []
        while not frames or frames[-1]["type"] not in ("done", "error"):
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), 60)))
        return frames


def test_a_token_from_the_api_streams_a_chat_over_the_websocket(gatehouse: ServedGatehouse) -> None:
    frames = asyncio.run(_chat(gatehouse, _login(gatehouse)))
    start, *tokens, done = frames
    conversation = start.pop("conversation")
    assert start == {"type": "start", "id": "e2e", "model": "demo-tiny", "version": "v1"}
    assert uuid.UUID(conversation)
    assert [frame["index"] for frame in tokens] == list(range(len(tokens)))
    assert done["type"] == "done", done
    assert done["usage"]["completion_tokens"] == len(tokens)
    assert done["usage"]["total_tokens"] == done["usage"]["prompt_tokens"] + len(tokens)
    counts = json.loads(
        gatehouse.manage(
            "shell",
            "-c",
            "import json; from audit.models import AuditEvent as E; "
            "print(json.dumps({a: E.objects.filter(action=a).count() "
            "for a in ('auth.login.succeeded', 'auth.login.failed', 'inference.completed')}))",
        )
        .strip()
        .splitlines()[-1]
    )
    assert counts["auth.login.succeeded"] >= 1
    assert counts["inference.completed"] >= 1


async def _handshake_status(url: str, headers: dict[str, str]) -> int | None:
    try:
        async with websockets.connect(url, additional_headers=headers):
            return None
    except websockets.exceptions.InvalidStatus as rejected:
        return int(rejected.response.status_code)


def test_the_websocket_rejects_a_missing_token_and_a_query_string_token(gatehouse: ServedGatehouse) -> None:
    assert asyncio.run(_handshake_status(gatehouse.ws_url, {})) == 403
    token = _login(gatehouse)
    # Tokens in URLs leak into logs; the server does not read them.
    assert asyncio.run(_handshake_status(f"{gatehouse.ws_url}?token={token}", {})) == 403


def test_the_websocket_rejects_a_foreign_browser_origin(gatehouse: ServedGatehouse) -> None:
    token = _login(gatehouse)
    headers = {"Authorization": f"Bearer {token}", "Origin": "https://evil.example"}
    assert asyncio.run(_handshake_status(gatehouse.ws_url, headers)) == 403


def test_the_served_model_is_a_verified_hugging_face_directory(gatehouse: ServedGatehouse) -> None:
    model_dir = Path(gatehouse.env["GATEHOUSE_MODEL_ROOT"]) / "demo-tiny" / "v1"
    assert (model_dir / "model.safetensors").is_file()
    assert (model_dir / "tokenizer.json").is_file()

"""SPEC §6 over a real socket, with the `websockets` client library, against a served stack."""

import asyncio
import json
import time
from collections import defaultdict
from typing import Any

import httpx
import pytest
import websockets

from tests.e2e.conftest import HELD_MAX_TOKENS
from tests.e2e.server import ServedGatehouse

pytestmark = pytest.mark.e2e


def _access(gatehouse: ServedGatehouse) -> str:
    response = httpx.post(
        f"{gatehouse.base_url}/api/auth/token/",
        json={"username": gatehouse.admin_username, "password": gatehouse.admin_password},
    )
    return str(response.json()["access"])


def _chat(client_id: str, **overrides: Any) -> str:
    frame = {
        "type": "chat",
        "id": client_id,
        "model": "demo-tiny",
        "messages": [{"role": "user", "content": f"hello from {client_id}"}],
        "max_tokens": 16,
        # Greedy: the demo model never ends early, so lengths are exact.
        "temperature": 0,
    }
    return json.dumps({**frame, **overrides})


async def _receive(ws: Any) -> dict[str, Any]:
    return dict(json.loads(await asyncio.wait_for(ws.recv(), 60)))


def _contiguous(frames: list[dict[str, Any]], count: int) -> None:
    tokens = [frame for frame in frames if frame["type"] == "token"]
    assert [frame["index"] for frame in tokens] == list(range(count))
    assert frames[-1]["type"] == "done"
    assert frames[-1]["usage"]["completion_tokens"] == count


def test_two_concurrent_chats_on_one_connection_then_a_cancel(
    gatehouse: ServedGatehouse, held_model: str
) -> None:
    async def run() -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]]]:
        headers = {"Authorization": f"Bearer {_access(gatehouse)}"}
        async with websockets.connect(gatehouse.ws_url, additional_headers=headers) as ws:
            await ws.send(_chat("first", max_tokens=12))
            await ws.send(_chat("second", max_tokens=20))
            frames: dict[str, list[dict[str, Any]]] = defaultdict(list)
            while sum(1 for chat in frames.values() if chat and chat[-1]["type"] == "done") < 2:
                frame = await _receive(ws)
                frames[frame["id"]].append(frame)
            await ws.send(_chat("long", model=held_model, max_tokens=HELD_MAX_TOKENS))
            long = [await _receive(ws)]
            while long[-1]["type"] != "token":
                long.append(await _receive(ws))
            await ws.send(json.dumps({"type": "cancel", "id": "long"}))
            while long[-1]["type"] not in ("done", "error"):
                long.append(await _receive(ws))
            return frames, long

    frames, long = asyncio.run(run())
    _contiguous(frames["first"], 12)
    _contiguous(frames["second"], 20)
    assert long[-1]["finish_reason"] == "cancelled"
    assert long[-1]["usage"]["completion_tokens"] < HELD_MAX_TOKENS


def test_an_oversized_frame_closes_the_connection_with_1009(gatehouse: ServedGatehouse) -> None:
    async def run() -> int | None:
        headers = {"Authorization": f"Bearer {_access(gatehouse)}"}
        async with websockets.connect(gatehouse.ws_url, additional_headers=headers) as ws:
            await ws.send(_chat("big", messages=[{"role": "user", "content": "x" * 70_000}]))
            with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
                await _receive(ws)
            return closed.value.rcvd.code if closed.value.rcvd else None

    assert asyncio.run(run()) == 1009


def test_revoking_the_key_mid_stream_closes_the_connection(
    gatehouse: ServedGatehouse, held_model: str
) -> None:
    access = _access(gatehouse)
    created = httpx.post(
        f"{gatehouse.base_url}/api/keys/",
        json={"name": "to-revoke", "scopes": ["chat"]},
        headers={"Authorization": f"Bearer {access}"},
    ).json()

    async def run() -> tuple[list[dict[str, Any]], int | None]:
        headers = {"Authorization": f"Bearer {created['key']}"}
        async with websockets.connect(gatehouse.ws_url, additional_headers=headers) as ws:
            await ws.send(_chat("doomed", model=held_model, max_tokens=HELD_MAX_TOKENS))
            frames = [await _receive(ws)]
            while frames[-1]["type"] != "token":
                frames.append(await _receive(ws))
            async with httpx.AsyncClient() as http:
                revoked = await http.delete(
                    f"{gatehouse.base_url}/api/keys/{created['id']}/",
                    headers={"Authorization": f"Bearer {access}"},
                )
            assert revoked.status_code in (200, 204), revoked.text
            try:
                while True:
                    frames.append(await _receive(ws))
            except websockets.exceptions.ConnectionClosed as closed:
                return frames, closed.rcvd.code if closed.rcvd else None

    frames, code = asyncio.run(run())
    assert code == 4401
    assert frames[-1]["type"] == "error"
    assert frames[-1]["code"] == "forbidden"


def test_fifty_concurrent_streams_arrive_complete_and_in_order(gatehouse: ServedGatehouse) -> None:
    access = _access(gatehouse)

    async def one(index: int) -> list[dict[str, Any]]:
        headers = {"Authorization": f"Bearer {access}"}
        async with websockets.connect(gatehouse.ws_url, additional_headers=headers) as ws:
            await ws.send(_chat(f"s{index}"))
            frames = [await _receive(ws)]
            while frames[-1]["type"] not in ("done", "error"):
                frames.append(await _receive(ws))
            return frames

    async def run() -> list[list[dict[str, Any]]]:
        return list(await asyncio.gather(*(one(index) for index in range(50))))

    for frames in asyncio.run(run()):
        _contiguous(frames, 16)


def test_a_socket_dropped_mid_stream_charges_what_ran_and_leaks_no_quota(
    gatehouse: ServedGatehouse, held_model: str
) -> None:
    admin = gatehouse.admin_username
    gatehouse.manage(
        "shell",
        "-c",
        "from accounts.models import QuotaPolicy, User; "
        f"QuotaPolicy.objects.get_or_create(name='e2e', user=User.objects.get(username='{admin}'), "
        "defaults={'tokens_per_day': 1000000})",
    )
    try:
        metadata, used = _dropped_chat_outcome(gatehouse, held_model)
    finally:
        # The stack is shared: the policy this test made does not outlive it.
        gatehouse.manage(
            "shell",
            "-c",
            "from accounts.models import QuotaPolicy; QuotaPolicy.objects.filter(name='e2e').delete()",
        )
    assert metadata is not None
    # Held after its first tokens, the chat was still running when the socket vanished.
    assert metadata["finish_reason"] == "cancelled"
    # Whatever ran is charged, exactly; the reservation for the rest came back.
    assert used == metadata["prompt_tokens"] + metadata["completion_tokens"]


def _dropped_chat_outcome(gatehouse: ServedGatehouse, held_model: str) -> tuple[dict[str, Any] | None, int]:
    """Drop a socket mid-chat; then the chat's record and the tokens the quota counts."""
    admin = gatehouse.admin_username

    async def run() -> None:
        headers = {"Authorization": f"Bearer {_access(gatehouse)}", "X-Request-ID": "dropped-1"}
        ws = await websockets.connect(gatehouse.ws_url, additional_headers=headers)
        await ws.send(_chat("dropped", model=held_model, max_tokens=HELD_MAX_TOKENS))
        frame = await _receive(ws)
        while frame["type"] != "token":
            frame = await _receive(ws)
        ws.transport.abort()  # no closing handshake: the connection just vanishes

    asyncio.run(run())
    query = (
        "import json; from audit.models import AuditEvent as E; from accounts.models import User; "
        "from accounts.quotas.plan import quota_plan_for; from accounts.services.quotas import quota_ledger; "
        "e = E.objects.filter(action='inference.completed', request_id='dropped-1').first(); "
        f"(limit,) = quota_plan_for(user=User.objects.get(username='{admin}'), api_key=None).tokens; "
        "print(json.dumps([e and e.metadata, quota_ledger().used(key=limit.spec.key)]))"
    )
    metadata, used = None, 0
    for _ in range(50):
        metadata, used = json.loads(gatehouse.manage("shell", "-c", query).strip().splitlines()[-1])
        if metadata:
            break
        time.sleep(0.2)
    return metadata, used

"""Scale-out on one machine: two web processes behind a load balancer and two Celery workers,
one PostgreSQL database and one Redis, behave as one platform.

- Quotas are exact across them: a burst through the balancer, spread over both web processes,
  gets exactly the limit's worth of answers, the rest the documented 429, and the usage
  records are exactly the answered requests'.
- Revocation is immediate across them: a key revoked through one process is refused by the
  other's very next request, and a websocket open on one closes when its user is deactivated
  through the other.
- The audit trail is one chain: events written by both web processes and by both workers are
  sealed into it, and `manage.py audit_verify` passes over the shared database.

The stack is the package's (`gatehouse`: web process A and its worker) plus `second_server`
(web process B) and a second worker started here on the same queue. The balancer is a
round-robin TCP proxy on loopback: a client (the burst) sees one address and each new
connection goes to the next web process, as behind a real balancer. Where a test must choose
the process (revoke on A, use on B), it calls that process's own address.
"""

import asyncio
import json
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from celery import Celery

from tests.e2e.server import REPO_ROOT, ServedGatehouse
from tests.profile import PRODUCTION
from tests.quota_windows import quota_minute_fresh_wait

pytestmark = pytest.mark.skipif(
    not PRODUCTION,
    reason="several processes share quotas, revocations and the chain through PostgreSQL and Redis "
    "(production profile)",
)

GENERATE_TASK = "inference.tasks.inference_generate"


class RoundRobinBalancer:
    """A TCP proxy on loopback handing each new connection to the next backend in turn."""

    def __init__(self, backends: list[str]) -> None:
        self.backends = [
            (url.rsplit(":", 1)[0].removeprefix("http://"), int(url.rsplit(":", 1)[1])) for url in backends
        ]
        self.connections: Counter[int] = Counter()  # backend index -> connections handed to it
        self._turn = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="balancer", daemon=True)
        self.url = ""

    def __enter__(self) -> "RoundRobinBalancer":
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the balancer did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._accept, "127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        self._ready.set()
        self._loop.run_forever()
        server.close()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        index = self._turn % len(self.backends)
        self._turn += 1
        self.connections[index] += 1
        host, port = self.backends[index]
        try:
            backend_reader, backend_writer = await asyncio.open_connection(host, port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            self._pipe(client_reader, backend_writer), self._pipe(backend_reader, client_writer)
        )

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()


@pytest.fixture(scope="module")
def balancer(gatehouse: ServedGatehouse, second_server: str) -> Iterator[RoundRobinBalancer]:
    with RoundRobinBalancer([gatehouse.base_url, second_server]) as running:
        yield running


def _worker_control(gatehouse: ServedGatehouse) -> Celery:
    """A Celery client on the stack's broker (its Redis database, not the suite's).

    Not made the current app: shared tasks resolve to the current app, so the suite's own
    tasks would be sent to this broker afterwards."""
    return Celery(broker=gatehouse.env["REDIS_URL"], set_as_current=False)


@pytest.fixture(scope="module")
def workers(gatehouse: ServedGatehouse, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """The hostnames of the stack's worker and of a second one started here on the same queues."""
    first = f"e2e-{gatehouse.base_url.rsplit(':', 1)[1]}@localhost"
    second = f"scale-out-{uuid.uuid4().hex[:6]}@localhost"
    log = Path(tmp_path_factory.mktemp("second-worker")) / "worker.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "gatehouse", "worker", "-Q", "inference.demo-tiny,celery",
         "--pool", "threads", "--concurrency", "4", "--without-gossip", "--without-mingle",
         "--hostname", second],
        cwd=REPO_ROOT, env=gatehouse.env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    control = _worker_control(gatehouse)
    try:
        deadline = time.monotonic() + 60
        while not control.control.ping(destination=[second], timeout=1.0):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the second worker did not start:\n{log.read_text(errors='replace')}")
        yield [first, second]
    finally:
        control.close()
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def _generations_run(gatehouse: ServedGatehouse, workers: list[str]) -> dict[str, int]:
    """How many generations each worker has run since it started."""
    control = _worker_control(gatehouse)
    try:
        stats: dict[str, Any] = control.control.inspect(destination=workers, timeout=3.0).stats() or {}
    finally:
        control.close()
    return {worker: int(stats.get(worker, {}).get("total", {}).get(GENERATE_TASK, 0)) for worker in workers}


def _shell(gatehouse: ServedGatehouse, code: str) -> Any:
    """Run `code` in `manage.py shell` (another process on the shared database); it prints JSON
    on its last line, which is returned."""
    return json.loads(gatehouse.manage("shell", "-c", code).strip().splitlines()[-1])


def _member(gatehouse: ServedGatehouse, *, requests_per_minute: int | None = None) -> dict[str, Any]:
    """A new member with a password, a chat key, a SCIM link (so provisioning can deactivate
    them) and, if asked, a requests-per-minute quota of their own."""
    username = f"scale-{uuid.uuid4().hex[:8]}"
    return dict(
        _shell(
            gatehouse,
            f"""
import json
from accounts.models import QuotaPolicy, User
from accounts.services import user_create
from accounts.services.api_keys import api_key_create
from accounts.services.quotas import quota_policy_save
from scim.models import ScimUser
user = user_create(username={username!r}, password="correct-horse-battery-staple")
key = api_key_create(user=user, name="scale", scopes=["chat"], actor=user)[1]
link = ScimUser.objects.create(user=user)
if {requests_per_minute!r}:
    admin = User.objects.get(username={gatehouse.admin_username!r})
    quota_policy_save(
        policy=QuotaPolicy(name={username!r}, user=user, requests_per_minute={requests_per_minute!r}), actor=admin
    )
print(json.dumps({{"id": user.pk, "username": user.username, "key": key, "scim_id": str(link.id)}}))
""",
        )
    )


def _chat_body() -> dict[str, Any]:
    return {
        "model": "demo-tiny",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 1,
        "temperature": 0,
    }


def _chat(base_url: str, key: str, request_id: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} | ({"X-Request-ID": request_id} if request_id else {})
    return httpx.post(f"{base_url}/v1/chat/completions", json=_chat_body(), headers=headers, timeout=120)


def test_a_quota_is_exact_across_both_web_processes_and_workers(
    gatehouse: ServedGatehouse, balancer: RoundRobinBalancer, workers: list[str]
) -> None:
    limit, burst = 6, 20
    member = _member(gatehouse, requests_per_minute=limit)
    before = dict(balancer.connections)

    async def fire() -> list[httpx.Response]:
        # No keep-alive: each request is a new connection, so the balancer spreads them.
        limits = httpx.Limits(max_keepalive_connections=0, max_connections=burst)
        async with httpx.AsyncClient(limits=limits, timeout=120) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        f"{balancer.url}/v1/chat/completions",
                        json=_chat_body(),
                        headers={"Authorization": f"Bearer {member['key']}"},
                    )
                    for _ in range(burst)
                )
            )

    quota_minute_fresh_wait()  # the burst fits in one requests-per-minute window
    responses = asyncio.run(fire())
    spread = {index: balancer.connections[index] - before.get(index, 0) for index in (0, 1)}
    assert spread == {0: burst // 2, 1: burst // 2}  # both web processes took half the burst

    answered = [response for response in responses if response.status_code == 200]
    refused = [response for response in responses if response.status_code != 200]
    assert len(answered) == limit, [response.status_code for response in responses]
    assert len(refused) == burst - limit
    for response in refused:
        assert response.status_code == 429, response.text
        assert response.json()["error"]["code"] == "rate_limited"
        assert int(response.headers["Retry-After"]) > 0

    recorded = _shell(
        gatehouse,
        "import json; from accounts.models import UsageRecord; from accounts.services.usage import usage_records_flush; "
        f"usage_records_flush(); print(json.dumps(sorted(UsageRecord.objects.filter(user_id={member['id']})"
        ".values_list('request_id', flat=True))))",
    )
    assert recorded == sorted(response.headers["x-request-id"] for response in answered)


def test_a_revocation_on_one_web_process_holds_on_the_other_at_once(
    gatehouse: ServedGatehouse, second_server: str, workers: list[str]
) -> None:
    first = gatehouse.base_url
    admin = gatehouse.admin_token()
    created = httpx.post(
        f"{second_server}/api/keys/",
        json={"name": f"scale-{uuid.uuid4().hex[:6]}", "scopes": ["chat"]},
        headers={"Authorization": f"Bearer {admin}"},
        timeout=30,
    )
    assert created.status_code == 201, created.text
    key_id, key = created.json()["id"], created.json()["key"]
    assert _chat(first, key).status_code == 200
    assert _chat(second_server, key).status_code == 200  # both processes now know the key
    revoked = httpx.delete(
        f"{first}/api/keys/{key_id}/", headers={"Authorization": f"Bearer {admin}"}, timeout=30
    )
    assert revoked.status_code in (200, 204), revoked.text
    assert _chat(second_server, key).status_code == 401

    member = _member(gatehouse)
    scim_token = (
        gatehouse.manage("scim_token_create", f"scale-{uuid.uuid4().hex[:6]}").strip().splitlines()[-1]
    )
    access = httpx.post(
        f"{second_server}/api/auth/token/",
        json={"username": member["username"], "password": "correct-horse-battery-staple"},
        timeout=30,
    ).json()["access"]

    async def run() -> tuple[dict[str, Any], int | None]:
        ws_url = second_server.replace("http://", "ws://") + "/ws/chat/"
        async with websockets.connect(ws_url, additional_headers={"Authorization": f"Bearer {access}"}) as ws:
            await ws.send(json.dumps({"type": "chat", "id": "before", **_chat_body()}))
            frame: dict[str, Any] = {}
            while frame.get("type") not in ("done", "error"):
                frame = json.loads(await asyncio.wait_for(ws.recv(), 60))
            async with httpx.AsyncClient(timeout=30) as http:
                deactivated = await http.patch(
                    f"{first}/scim/v2/Users/{member['scim_id']}",
                    json={
                        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                        "Operations": [{"op": "replace", "path": "active", "value": False}],
                    },
                    headers={"Authorization": f"Bearer {scim_token}"},
                )
            assert deactivated.status_code == 200, deactivated.text
            try:
                while True:  # no frame is sent: the close comes from the deactivation alone
                    await asyncio.wait_for(ws.recv(), 10)
            except websockets.exceptions.ConnectionClosed as closed:
                return frame, closed.rcvd.code if closed.rcvd else None
            except TimeoutError:
                return frame, None  # still open

    finished, code = asyncio.run(run())
    assert finished["type"] == "done", finished
    assert code == 4401


def test_both_web_processes_and_both_workers_write_one_verifiable_chain(
    gatehouse: ServedGatehouse, second_server: str, workers: list[str]
) -> None:
    admin = gatehouse.admin_token()
    tag = uuid.uuid4().hex[:8]
    web_ids = {"a": f"scale-{tag}-key-a", "b": f"scale-{tag}-key-b"}
    keys = {}
    for name, base_url in (("a", gatehouse.base_url), ("b", second_server)):
        created = httpx.post(
            f"{base_url}/api/keys/",
            json={"name": f"scale-{tag}-{name}", "scopes": ["chat"]},
            headers={"Authorization": f"Bearer {admin}", "X-Request-ID": web_ids[name]},
            timeout=30,
        )
        assert created.status_code == 201, created.text
        keys[name] = created.json()["key"]

    # Chats through both processes, in rounds of concurrent ones, until both workers ran some.
    before = _generations_run(gatehouse, workers)
    chat_ids: list[str] = []
    for round_ in range(5):
        batch = [f"scale-{tag}-chat-{round_}-{index}" for index in range(8)]
        targets = [
            (gatehouse.base_url, keys["a"]) if index % 2 else (second_server, keys["b"]) for index in range(8)
        ]
        with_threads = [
            threading.Thread(target=_chat, args=(base_url, key, request_id))
            for (base_url, key), request_id in zip(targets, batch, strict=True)
        ]
        for thread in with_threads:
            thread.start()
        for thread in with_threads:
            thread.join(timeout=120)
        chat_ids += batch
        ran = _generations_run(gatehouse, workers)
        if all(ran[worker] > before[worker] for worker in workers):
            break
    assert all(ran[worker] > before[worker] for worker in workers), (before, ran)

    # Wait for the processes' own sealers (nothing here seals), then look at what they sealed.
    wanted = [*web_ids.values(), *chat_ids]
    sealed = _shell(
        gatehouse,
        f"""
import json, time
from audit.models import AuditEvent
deadline = time.monotonic() + 30
while AuditEvent.objects.filter(sequence__isnull=True).exists() and time.monotonic() < deadline:
    time.sleep(0.2)
rows = AuditEvent.objects.filter(request_id__in={wanted!r}).values_list("request_id", "action", "sequence")
print(json.dumps([list(row) for row in rows]))
""",
    )
    actions = {request_id: action for request_id, action, _ in sealed}
    assert all(sequence is not None for _, _, sequence in sealed), sealed
    assert actions[web_ids["a"]] == actions[web_ids["b"]] == "apikey.created"
    assert {request_id for request_id, action, _ in sealed if action == "inference.completed"} == set(
        chat_ids
    )

    report = json.loads(gatehouse.manage("audit_verify", "--no-seal", "--json"))
    assert report["ok"], report
    assert report["first_break"] is None, report
    assert report["pending_events"] == 0, report
    assert report["events"] >= len(sealed)
    assert max(sequence for _, _, sequence in sealed) <= report["head_sequence"]

"""One served stack for every end-to-end module (starting one takes seconds).

The stack is shared, so a test that changes it (a model's cap, a quota policy) puts back
what it changed, and a test that counts exactly (tests/e2e/test_operations.py) serves a
stack of its own. Tests that cancel a chat use `demo-held` (the `held_model` fixture): the
same demo model, whose generations wait after their first tokens until they are cancelled
(GATEHOUSE_TEST_HOLD_MODELS), so a cancel never races the end of the answer.
"""

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import REPO_ROOT, ServedGatehouse, _wait_until_healthy, free_port, serve
from tests.fake_openai import FakeUpstream, fake_upstream

HELD_MODEL = "demo-held"
# A held chat may ask for this many tokens: far more than it produces before its cancel.
HELD_MAX_TOKENS = 400


@pytest.fixture(scope="package")
def gatehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedGatehouse]:
    # The load tests run 50 chats as one user, each on its own connection: above the default
    # per-user bounds, on purpose.
    served, stop = serve(
        tmp_path_factory.mktemp("served"),
        worker_concurrency=4,
        worker_queues=f"inference.demo-tiny,inference.demo-embed,inference.{HELD_MODEL},celery",
        extra_env={
            "GATEHOUSE_MAX_CONCURRENT_CHATS_PER_USER": "64",
            "GATEHOUSE_WS_MAX_CONNECTIONS_PER_USER": "64",
            "GATEHOUSE_TEST_HOLD_MODELS": HELD_MODEL,
        },
    )
    yield served
    stop()


@pytest.fixture(scope="package")
def held_model(gatehouse: ServedGatehouse) -> str:
    """`demo-held`, open to all: the demo model, held after its first tokens until cancelled."""
    gatehouse.manage(
        "shell",
        "-c",
        f"""
from pathlib import Path
from django.conf import settings
from accounts.models import User
from inference.demo_model import demo_model_build
from inference.models import Model
from inference.services import model_register, model_version_promote, model_version_register

if not Model.objects.filter(name={HELD_MODEL!r}).exists():
    admin = User.objects.get(username={gatehouse.admin_username!r})
    directory = Path(settings.GATEHOUSE_MODEL_ROOT) / {HELD_MODEL!r} / "v1"
    demo_model_build(directory=directory)
    model = model_register(name={HELD_MODEL!r}, open_to_all=True, max_tokens_cap={HELD_MAX_TOKENS}, actor=admin)
    version = model_version_register(
        model=model, label="v1", source=str(directory), context_length=512, actor=admin
    )
    model_version_promote(version=version, actor=admin)
""",
    )
    return HELD_MODEL


@pytest.fixture(scope="package")
def upstream() -> Iterator[FakeUpstream]:
    """An OpenAI-compatible server on loopback, for the remote versions below."""
    with fake_upstream() as server:
        yield server


@pytest.fixture(scope="package")
def remote_model(gatehouse: ServedGatehouse, upstream: FakeUpstream) -> str:
    """A chat model open to all whose production version is `upstream`."""
    name = f"remote-{uuid.uuid4().hex[:6]}"
    gatehouse.manage(
        "shell",
        "-c",
        "from inference.services import model_register, model_version_promote; "
        "from inference.services.registry import model_version_register_remote; "
        f"model = model_register(name={name!r}, open_to_all=True, actor=None); "
        "version = model_version_register_remote(model=model, label='r1', "
        f"base_url={upstream.base_url!r}, remote_model='upstream-model', actor=None); "
        "model_version_promote(version=version, actor=None)",
    )
    return name


@pytest.fixture(scope="package")
def chat_key(gatehouse: ServedGatehouse) -> str:
    """An API key with the chat scope, minted the way a developer would."""
    created = httpx.post(
        f"{gatehouse.base_url}/api/keys/",
        json={"name": f"chat-{uuid.uuid4().hex[:6]}", "scopes": ["chat"]},
        headers={"Authorization": f"Bearer {gatehouse.admin_token()}"},
    )
    assert created.status_code == 201, created.text
    return str(created.json()["key"])


@pytest.fixture(scope="package")
def second_server(gatehouse: ServedGatehouse, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Another web server process on the same database and Redis as `gatehouse`'s."""
    port = free_port()
    log = Path(tmp_path_factory.mktemp("second")) / "server.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "gatehouse.asgi:application", "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO_ROOT, env=gatehouse.env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_healthy(base_url, process, log)
        yield base_url
    finally:
        process.terminate()
        process.wait(timeout=20)

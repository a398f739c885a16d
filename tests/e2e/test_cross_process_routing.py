"""Two web processes share what routing knows: an upstream one process found failing is
skipped by the other, a deployment full in one is full in both, and an answer one kept is
found by the other (circuit breakers, deployment counts and the response cache live in Redis).
"""

import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from inference.engines.circuit_breaker import SHARED_READ_SECONDS
from tests.e2e.server import ServedGatehouse
from tests.fake_openai import FakeUpstream, fake_upstream
from tests.profile import PRODUCTION

pytestmark = pytest.mark.skipif(
    not PRODUCTION, reason="what routing knows is shared through Redis (production profile)"
)


@pytest.fixture
def two_upstreams() -> Iterator[tuple[FakeUpstream, FakeUpstream]]:
    with fake_upstream() as first, fake_upstream() as second:
        second.words = ["from ", "the ", "second"]
        yield first, second


def _model(
    gatehouse: ServedGatehouse,
    first: FakeUpstream,
    second: FakeUpstream,
    *,
    first_limits: str = "",
    serving: str = "{}",
) -> str:
    """A model served by `first` (nearly all the weight) and `second`, registered from the
    command line as an operator would, then promoted and given its `serving` settings."""
    name = f"routed-{uuid.uuid4().hex[:6]}"
    gatehouse.manage(
        "model_version_register",
        name,
        "--label",
        "r1",
        "--open-to-all",
        "--remote-base-url",
        second.base_url,
        "--remote-model",
        "upstream-model",
        "--deployment",
        f"{first.base_url},upstream-model,,1000{first_limits}",
    )
    gatehouse.manage(
        "shell",
        "-c",
        "from inference.models import ModelVersion; "
        "from inference.services import model_serving_update, model_version_promote, model_version_stage; "
        f"version = ModelVersion.objects.get(model__name={name!r}); "
        "model_version_stage(version=version, actor=None); model_version_promote(version=version, actor=None); "
        f"model_serving_update(model=version.model, changes={serving}, actor=None)",
    )
    return name


def _chat(base_url: str, key: str, model: str) -> httpx.Response:
    return httpx.post(
        f"{base_url}/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "hi"}], "temperature": 0},
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )


def test_an_upstream_failing_in_one_process_is_skipped_by_the_other(
    gatehouse: ServedGatehouse,
    second_server: str,
    chat_key: str,
    two_upstreams: tuple[FakeUpstream, FakeUpstream],
) -> None:
    first, second = two_upstreams
    model = _model(gatehouse, first, second)
    for base_url in (gatehouse.base_url, second_server):  # both call the first while it answers
        assert _chat(base_url, chat_key, model).status_code == 200
    assert len(first.requests) == 2
    first.mode = "always_503"
    # The first process meets the failures (each answered by the second deployment) until its
    # breaker opens; opening it tells every process.
    for _ in range(5):  # GATEHOUSE_REMOTE_BREAKER_THRESHOLD's default
        answer = _chat(gatehouse.base_url, chat_key, model)
        assert answer.json()["choices"][0]["message"]["content"] == "from the second"
    called = len(first.requests)
    time.sleep(SHARED_READ_SECONDS + 0.2)  # the other process reads the shared state this often
    for _ in range(5):
        assert _chat(second_server, chat_key, model).status_code == 200
    assert len(first.requests) == called  # the other process never called it


def test_a_deployment_full_in_one_process_is_full_in_the_other(
    gatehouse: ServedGatehouse,
    second_server: str,
    chat_key: str,
    two_upstreams: tuple[FakeUpstream, FakeUpstream],
) -> None:
    first, second = two_upstreams
    model = _model(gatehouse, first, second, first_limits=",max_concurrency=1")
    first.mode = "hold"
    held = threading.Thread(target=_chat, args=(gatehouse.base_url, chat_key, model))
    held.start()
    try:
        deadline = time.monotonic() + 30
        while first.held < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert first.held == 1
        # The first deployment's one place is taken in the other process: this call goes on.
        answer = _chat(second_server, chat_key, model)
        assert answer.json()["choices"][0]["message"]["content"] == "from the second"
        assert len(first.requests) == 1
    finally:
        first.release()
        held.join(timeout=60)


def test_an_answer_kept_by_one_process_is_found_by_the_other(
    gatehouse: ServedGatehouse,
    second_server: str,
    chat_key: str,
    two_upstreams: tuple[FakeUpstream, FakeUpstream],
) -> None:
    first, second = two_upstreams
    model = _model(gatehouse, first, second, serving="{'response_cache': True}")
    kept = _chat(gatehouse.base_url, chat_key, model)
    found = _chat(second_server, chat_key, model)
    assert (kept.headers["X-Gatehouse-Cache"], found.headers["X-Gatehouse-Cache"]) == ("miss", "hit")
    assert found.json()["choices"] == kept.json()["choices"]
    assert len(first.requests) + len(second.requests) == 1

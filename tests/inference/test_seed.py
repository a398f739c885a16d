"""`seed`: the same seed, settings and prompt sample the same text again, on either kind of
batching; a remote version is passed the seed."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from channels.db import database_sync_to_async

from accounts.models import User
from inference.engines.base import ChatMessage, GenerationParams
from inference.engines.local import LocalTransformersEngine
from inference.models import ModelVersion
from tests.fake_openai import FakeUpstream
from tests.inference.engines import demo_engine
from tests.inference.fast_path import api_key_mint, remote_model_register, v1_post


@pytest.fixture(scope="module", params=["continuous", "static"])
def engine(request: pytest.FixtureRequest, demo_directory: Path) -> Iterator[LocalTransformersEngine]:
    with demo_engine(demo_directory, batching=request.param) as engine:
        yield engine


def _text(engine: LocalTransformersEngine, **params: Any) -> str:
    pieces: list[str] = []
    engine.generate_stream(
        messages=[ChatMessage(role="user", content="Tell me something")],
        params=GenerationParams(max_tokens=24, temperature=1.2, **params),
        on_token=pieces.extend,
        should_stop=lambda: False,
    )
    return "".join(pieces)


def test_the_same_seed_samples_the_same_text(engine: LocalTransformersEngine) -> None:
    first = _text(engine, seed=7)
    assert _text(engine, seed=7) == first
    assert _text(engine, seed=-7) != first or _text(engine, seed=8) != first
    # Unseeded sampling at this temperature does not repeat itself.
    assert len({_text(engine) for _ in range(3)}) > 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("inference_backend")
async def test_the_seed_reaches_the_model_through_the_api(bob: User, demo_version: ModelVersion) -> None:
    key = await database_sync_to_async(api_key_mint)(bob)
    body = {
        "model": "demo-tiny",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 16,
        "temperature": 1.3,
    }
    texts = [
        (await v1_post({**body, "seed": seed}, key=key)).json()["choices"][0]["message"]["content"]
        for seed in (42, 42, 43)
    ]
    assert texts[0] == texts[1]
    assert texts[0] != texts[2]
    refused = await v1_post({**body, "seed": "42"}, key=key)
    assert refused.status_code == 400
    assert refused.json()["error"]["message"] == "seed: seed must be an integer."


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("inference_backend")
async def test_a_remote_version_is_passed_the_seed(alice: User, bob: User, upstream: FakeUpstream) -> None:
    await database_sync_to_async(remote_model_register)(alice, upstream)
    key = await database_sync_to_async(api_key_mint)(bob)
    body = {"model": "remote-model", "messages": [{"role": "user", "content": "hi"}], "seed": 0}
    assert (await v1_post(body, key=key)).status_code == 200
    assert upstream.requests[-1]["body"]["seed"] == 0
    assert (await v1_post({**body, "seed": None}, key=key)).status_code == 200
    assert "seed" not in upstream.requests[-1]["body"]

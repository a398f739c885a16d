"""The official `openai` package against a served Gatehouse, exactly as applications use it."""

import json
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.e2e.conftest import HELD_MAX_TOKENS
from tests.e2e.server import ServedGatehouse

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def api_key(gatehouse: ServedGatehouse) -> str:
    """An API key with the chat and model scopes, minted the way a developer would."""
    access = gatehouse.admin_token()
    created = httpx.post(
        f"{gatehouse.base_url}/api/keys/",
        json={"name": "openai-client", "scopes": ["chat", "models:read"]},
        headers={"Authorization": f"Bearer {access}"},
    )
    assert created.status_code == 201, created.text
    return str(created.json()["key"])


@pytest.fixture
def client(gatehouse: ServedGatehouse, api_key: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{gatehouse.base_url}/v1", api_key=api_key, max_retries=0) as client:
        yield client


def test_models_list(client: openai.OpenAI) -> None:
    assert "demo-tiny" in [model.id for model in client.models.list()]


def test_a_completion(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="demo-tiny", messages=[{"role": "user", "content": "Hello"}], max_tokens=8
    )
    assert completion.object == "chat.completion"
    assert isinstance(completion.choices[0].message.content, str)
    assert completion.choices[0].finish_reason in ("stop", "length")
    assert completion.usage is not None
    assert (
        completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    )


def test_a_streamed_completion_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="demo-tiny",
        messages=[{"role": "user", "content": "Stream, please"}],
        max_tokens=16,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, finish, usage = [], None, None
    for chunk in stream:
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage:
            usage = chunk.usage
    assert finish == "length"
    assert usage is not None
    assert usage.completion_tokens == 16
    # The first chunk carries the role and no text; then one chunk per token, then the finish.
    assert len(pieces) == 1 + 16 + 1


def test_errors_are_raised_as_the_client_expects(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="n is 99, above this model's limit of 4 choices"):
        client.chat.completions.create(model="demo-tiny", messages=[{"role": "user", "content": "x"}], n=99)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])


def test_a_client_that_hangs_up_mid_stream_cancels_the_generation(
    gatehouse: ServedGatehouse, api_key: str, held_model: str
) -> None:
    # The held model waits after its first tokens until it is cancelled: the hang-up never
    # races the end of the answer.
    body = {
        "model": held_model,
        "messages": [{"role": "user", "content": "a long answer"}],
        "max_tokens": HELD_MAX_TOKENS,
        "temperature": 0,
        "stream": True,
    }
    headers = {"Authorization": f"Bearer {api_key}", "X-Request-ID": "hang-up-1"}
    with httpx.stream(
        "POST", f"{gatehouse.base_url}/v1/chat/completions", json=body, headers=headers
    ) as response:
        assert response.status_code == 200
        # The first chunk (the role) is sent as soon as the generation is queued: hang up then.
        assert next(response.iter_lines()).startswith("data: ")
    # The connection is closed: the generation stops and records itself as cancelled.
    query = (
        "import json; from audit.models import AuditEvent as E; "
        "e = E.objects.filter(action='inference.completed', request_id='hang-up-1').first(); "
        "print(json.dumps(e and e.metadata))"
    )
    for _ in range(50):
        metadata = json.loads(gatehouse.manage("shell", "-c", query).strip().splitlines()[-1])
        if metadata:
            break
        time.sleep(0.2)
    assert metadata is not None
    assert metadata["finish_reason"] == "cancelled"
    assert metadata["completion_tokens"] < HELD_MAX_TOKENS

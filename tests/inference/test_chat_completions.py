"""POST /v1/chat/completions through the ASGI stack, in OpenAI's shapes (SPEC §5).

Runs in both profiles: in the production profile the generation runs on the Celery worker
and its events come back over Redis to the view's own channel.
"""

import json
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.test import AsyncClient, override_settings

from accounts.models import User
from audit.models import AuditEvent
from inference.models import ModelVersion
from tests.inference.websocket import access_token
from tests.waiting import completed_audit_event_for, eventually

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("inference_backend")]

URL = "/v1/chat/completions"


def _body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "demo-tiny",
        "messages": [{"role": "user", "content": "hello"}],
        "max_tokens": 8,
        "temperature": 0.0,
    }
    body.update(overrides)
    return body


async def _post(user: User, body: Any, **headers: str) -> Any:
    # Per request: AsyncClient turns constructor headers into WSGI names the ASGI scope ignores.
    headers = {"Authorization": f"Bearer {await access_token(user)}", **headers}
    return await AsyncClient().post(URL, body, content_type="application/json", headers=headers)


async def _events(response: Any) -> list[Any]:
    """The SSE stream's data payloads: JSON objects, and the literal [DONE]."""
    raw = b"".join([chunk async for chunk in response.streaming_content]).decode()
    assert raw.endswith("\n\n")
    payloads = []
    for event in raw.strip().split("\n\n"):
        assert event.startswith("data: "), event
        data = event[len("data: ") :]
        payloads.append(data if data == "[DONE]" else json.loads(data))
    return payloads


async def test_a_completion_answers_in_openai_shape(bob: User, demo_version: ModelVersion) -> None:
    response = await _post(bob, _body(), **{"X-Request-ID": "api-trace-1"})
    assert response.status_code == 200, response.content
    assert response["X-Request-ID"] == "api-trace-1"
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert body["model"] == "demo-tiny"
    assert body["system_fingerprint"] == "demo-tiny@v1"
    (choice,) = body["choices"]
    assert choice["message"]["role"] == "assistant"
    # Greedy (_body): the demo model never writes end-of-text for this prompt.
    assert choice["finish_reason"] == "length"
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["prompt_tokens"] > 0
    assert usage["completion_tokens"] == 8
    event = await database_sync_to_async(AuditEvent.objects.get)(action="inference.completed")
    assert event.metadata["channel"] == "api"
    assert event.request_id == "api-trace-1"
    assert event.metadata["completion_tokens"] == usage["completion_tokens"]


async def test_a_stream_sends_role_tokens_finish_usage_then_done(
    bob: User, demo_version: ModelVersion
) -> None:
    response = await _post(bob, _body(stream=True, stream_options={"include_usage": True}))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/event-stream")
    events = await _events(response)
    first, *middle, finish, usage, done = events
    assert done == "[DONE]"
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(chunk["object"] == "chat.completion.chunk" and chunk["usage"] is None for chunk in events[:-2])
    assert len({chunk["id"] for chunk in events[:-1]}) == 1
    tokens = [chunk["choices"][0]["delta"]["content"] for chunk in middle]
    assert finish["choices"][0]["finish_reason"] == "length"
    assert len(tokens) == 8
    assert finish["choices"][0]["delta"] == {}
    assert usage["choices"] == []
    assert usage["usage"]["completion_tokens"] == len(tokens)


async def test_a_stream_without_include_usage_has_no_usage(bob: User, demo_version: ModelVersion) -> None:
    events = await _events(await _post(bob, _body(stream=True)))
    assert events[-1] == "[DONE]"
    assert all("usage" not in chunk for chunk in events[:-1])


@pytest.mark.parametrize(
    ("overrides", "param", "fragment"),
    [
        ({"n": 0}, "n", "n must be an integer from 1 to 128"),
        ({"n": True}, "n", "n must be an integer from 1 to 128"),
        ({"n": 5}, "detail", "n is 5, above this model's limit of 4 choices per request"),
        ({"best_of": 2}, "best_of", "Unrecognized request argument supplied: best_of"),
        ({"tools": [{"type": "function"}]}, "tools[0].function", "must be an object"),
        ({"functions": [{"name": "f"}]}, "functions", "Function calling is not supported; use tools"),
        ({"presence_penalty": 0.5}, "presence_penalty", "not supported"),
        ({"stream": "yes"}, "stream", "stream must be a boolean"),
        ({"stream_options": {"include_usage": True}}, "stream_options", "only allowed when stream is true"),
        ({"temperature": 3}, "detail", "'temperature' must be a number from 0.0 to 2.0"),
        ({"messages": []}, "detail", "'messages' must be a list of 1 to 100"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0]", "must name the call it answers"),
        ({"messages": [{"role": "critic", "content": "x"}]}, "detail", "role must be one of"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
            "messages[0]",
            "only text parts",
        ),
        ({"messages": [{"role": "user", "content": "x" * 40_000}]}, "detail", "at most 32000 characters"),
        ({"max_tokens": 0}, "detail", "'max_tokens' must be a positive integer"),
    ],
)
async def test_invalid_requests_get_a_400_in_openai_shape(
    bob: User, demo_version: ModelVersion, overrides: dict[str, Any], param: str, fragment: str
) -> None:
    response = await _post(bob, _body(**overrides))
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert fragment in error["message"], error
    if param != "detail":
        assert error["message"].startswith(f"{param}: ")
    assert not await database_sync_to_async(
        AuditEvent.objects.filter(action__startswith="inference.").exists
    )()


async def test_text_parts_and_the_developer_role_are_understood(
    bob: User, demo_version: ModelVersion
) -> None:
    messages = [
        {"role": "developer", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "hel"}, {"type": "text", "text": "lo"}]},
    ]
    response = await _post(bob, _body(messages=messages, max_completion_tokens=3))
    assert response.status_code == 200, response.content
    assert response.json()["usage"]["completion_tokens"] <= 3


async def test_max_tokens_above_the_cap_and_unknown_models_are_refused(
    bob: User, demo_version: ModelVersion
) -> None:
    over = await _post(bob, _body(max_tokens=100_000))
    assert over.status_code == 400
    assert "above this model's limit" in over.json()["error"]["message"]
    missing = await _post(bob, _body(model="no-such-model"))
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "not_found_error"


@override_settings(GATEHOUSE_INFERENCE_MAX_QUEUE=0)
async def test_a_full_queue_answers_503_at_once_and_is_audited(bob: User, demo_version: ModelVersion) -> None:
    response = await _post(bob, _body())
    assert response.status_code == 503
    assert response.json()["error"] == {
        "message": "The model is busy; try again shortly.",
        "type": "server_error",
        "code": "unavailable",
    }
    event = await database_sync_to_async(AuditEvent.objects.get)(action="inference.failed")
    assert event.metadata["channel"] == "api"
    assert event.metadata["reason"].startswith("queue full")


@override_settings(GATEHOUSE_TEST_HOLD_MODELS=("demo-tiny",))
async def test_a_client_that_hangs_up_mid_stream_cancels_the_generation(
    bob: User, demo_version: ModelVersion
) -> None:
    """As Django's ASGI handler does on a disconnect: close the iterator taken from the response."""
    response = await _post(bob, _body(stream=True, max_tokens=256), **{"X-Request-ID": "hang-up-1"})
    assert response.status_code == 200
    content = aiter(response)
    assert (await anext(content)).startswith(b"data: ")
    await content.aclose()
    event = await eventually(completed_audit_event_for(request_id="hang-up-1"))
    assert await database_sync_to_async(AuditEvent.objects.filter(action="inference.completed").count)() == 1
    assert event.metadata["finish_reason"] == "cancelled"
    assert event.metadata["completion_tokens"] < 256

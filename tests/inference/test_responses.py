"""`POST /v1/responses`, stateless: the official client's `responses.create`, `.stream` and
`.parse` work unchanged, on a local and a remote version, governed as chats are."""

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import openai
import pydantic
import pytest
from channels.db import database_sync_to_async

from accounts.models import User
from audit.models import AuditEvent
from gatehouse.asgi import application
from inference.models import ModelVersion
from tests.fake_openai import FakeUpstream
from tests.inference.fast_path import api_key_mint, remote_model_register, v1_post
from tests.waiting import completed_audit_event_for, eventually

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("inference_backend")]

URL = "/v1/responses"
CALL = {
    "id": "call_9",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
}
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}


@pytest.fixture
async def client(bob: User) -> AsyncIterator[openai.AsyncOpenAI]:
    key = await database_sync_to_async(api_key_mint)(bob)
    transport = httpx2.ASGITransport(app=application)
    async with httpx2.AsyncClient(transport=transport, base_url="http://localhost") as http:
        yield openai.AsyncOpenAI(base_url="http://localhost/v1", api_key=key, http_client=http, max_retries=0)


async def test_a_local_response_whole_and_streamed(
    client: openai.AsyncOpenAI, demo_version: ModelVersion
) -> None:
    whole = await client.responses.create(
        model="demo-tiny",
        instructions="Be brief.",
        input="Hello",
        max_output_tokens=6,
        temperature=0,
        extra_headers={"X-Request-ID": "resp-1"},
    )
    assert (whole.object, whole.status, whole.model) == ("response", "incomplete", "demo-tiny")
    assert whole.incomplete_details is not None
    assert whole.incomplete_details.reason == "max_output_tokens"
    assert whole.usage is not None
    assert whole.usage.output_tokens == 6
    assert whole.instructions == "Be brief."
    async with client.responses.stream(
        model="demo-tiny", instructions="Be brief.", input="Hello", max_output_tokens=6, temperature=0
    ) as stream:
        events = [event async for event in stream]
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    # Out of tokens, as OpenAI ends it: `response.incomplete` carries the response.
    assert kinds[-1] == "response.incomplete"
    final = events[-1].response  # type: ignore[union-attr]
    assert final.output_text == whole.output_text  # greedy: the same text either way
    assert kinds.count("response.output_text.delta") == 6
    event = await eventually(completed_audit_event_for(request_id="resp-1"))
    assert event.metadata["completion_tokens"] == 6


async def test_structured_output_is_parsed_by_the_client(
    client: openai.AsyncOpenAI, demo_version: ModelVersion
) -> None:
    class Verdict(pydantic.BaseModel):
        answer: str = pydantic.Field(max_length=8)
        sure: bool

    parsed = await client.responses.parse(
        model="demo-tiny", input="Well?", text_format=Verdict, max_output_tokens=80
    )
    assert isinstance(parsed.output_parsed, Verdict)


async def test_remote_tool_calls_and_their_results_round_trip(
    alice: User, client: openai.AsyncOpenAI, upstream: FakeUpstream
) -> None:
    await database_sync_to_async(remote_model_register)(alice, upstream)
    upstream.tool_calls = [CALL]
    async with client.responses.stream(
        model="remote-model", input="Weather in Oslo?", tools=[WEATHER], tool_choice="required"
    ) as stream:
        final = await stream.get_final_response()
    (call,) = [item for item in final.output if item.type == "function_call"]
    assert (call.call_id, call.name, json.loads(call.arguments)) == (
        "call_9",
        "get_weather",
        {"city": "Oslo"},
    )
    sent = upstream.requests[-1]["body"]
    assert sent["tools"] == [
        {"type": "function", "function": {key: value for key, value in WEATHER.items() if key != "type"}}
    ]
    assert sent["tool_choice"] == "required"

    # The caller ran the tool: the call and its output go back as input items.
    upstream.tool_calls = None
    answer = await client.responses.create(
        model="remote-model",
        input=[
            {"role": "user", "content": "Weather in Oslo?"},
            {
                "type": "function_call",
                "call_id": "call_9",
                "name": "get_weather",
                "arguments": '{"city": "Oslo"}',
            },
            {"type": "function_call_output", "call_id": "call_9", "output": "4 C, rain"},
        ],
        tools=[WEATHER],
    )
    assert answer.output_text == "".join(upstream.words)
    assert upstream.requests[-1]["body"]["messages"] == [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": None, "tool_calls": [{**CALL, "function": {**CALL["function"]}}]},
        {"role": "tool", "tool_call_id": "call_9", "content": "4 C, rain"},
    ]
    records = await database_sync_to_async(
        lambda: list(AuditEvent.objects.filter(action="inference.completed"))
    )()
    assert sorted(record.metadata["finish_reason"] for record in records) == ["stop", "tool_calls"]


async def test_a_failure_mid_stream_is_a_response_failed_event(
    alice: User, bob: User, upstream: FakeUpstream
) -> None:
    await database_sync_to_async(remote_model_register)(alice, upstream)
    upstream.mode = "reset_mid_stream"
    key = await database_sync_to_async(api_key_mint)(bob)
    response = await v1_post({"model": "remote-model", "input": "hi", "stream": True}, key=key, url=URL)
    assert response.status_code == 200
    events = sse_events_typed(response.text)
    assert events[0]["type"] == "response.created"
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["error"]["code"] == "unavailable"


def sse_events_typed(text: str) -> list[dict[str, Any]]:
    """The data of each `event:`/`data:` pair of a Responses stream."""
    events = []
    for block in text.strip().split("\n\n"):
        kind, data = block.split("\n", 1)
        payload = json.loads(data.removeprefix("data: "))
        assert kind == f"event: {payload['type']}"
        events.append(payload)
    return events


INVALID = {
    "stored": ({"input": "x", "store": True}, "store: Responses are not stored here: send store false (or leave it out)."),
    "previous": ({"input": "x", "previous_response_id": "resp_1"}, "previous_response_id: Unrecognized request argument supplied: previous_response_id"),
    "no-input": ({}, "input: you must provide an input."),
    "hosted-tool": ({"input": "x", "tools": [{"type": "web_search"}]}, "tools[0]: only function tools are supported, not 'web_search'."),
    "bad-tool-name": (
        {"input": "x", "tools": [{"type": "function", "name": "no spaces"}]},
        "tools[0].name: must be 1 to 64 letters, digits, underscores or dashes.",
    ),
    "image-part": (
        {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
        "input[0].content: must be a string or a list of text parts (input_text, output_text).",
    ),
    "unknown-item": ({"input": [{"type": "reasoning", "summary": []}]}, "input[0]: items of type 'reasoning' are not supported."),
    "strict-schema": (
        {"input": "x", "text": {"format": {"type": "json_schema", "name": "s", "strict": True, "schema": {"type": "object"}}}},
        "text.format.json_schema.schema: every object must set 'additionalProperties' to false in strict mode (at #).",
    ),
}  # fmt: skip


@pytest.mark.parametrize(("overrides", "message"), INVALID.values(), ids=INVALID.keys())
async def test_invalid_requests_are_400s_naming_the_field(
    bob: User, demo_version: ModelVersion, overrides: dict[str, Any], message: str
) -> None:
    key = await database_sync_to_async(api_key_mint)(bob)
    response = await v1_post({"model": "demo-tiny", **overrides}, key=key, url=URL)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"] == message
    assert not await database_sync_to_async(
        AuditEvent.objects.filter(action__startswith="inference.").exists
    )()

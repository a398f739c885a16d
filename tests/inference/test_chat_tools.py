"""Tools and structured outputs on `/v1/chat/completions`: validated, passed to a remote
version both ways, refused clearly where a version cannot serve them."""

import json
from typing import Any

import jsonschema
import pytest
from channels.db import database_sync_to_async
from django.test import override_settings

from accounts.models import QuotaPolicy, UsageRecord, User
from accounts.services.usage import usage_records_flush
from audit.models import AuditEvent
from inference.models import ModelVersion
from inference.services.registry import model_version_update
from tests.accounts.helpers import quota_counter_used
from tests.fake_openai import FakeUpstream
from tests.inference.fast_path import api_key_mint, remote_model_register, sse_events, v1_post

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("inference_backend")]

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}
CALLS = [
    {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Oslo", "unit": "c"}'},
    },
    {
        "id": "call_2",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Lima", "unit": "f"}'},
    },
]
PERSON = {
    "type": "json_schema",
    "json_schema": {
        "name": "person",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "tags": {"type": "array", "items": {"$ref": "#/$defs/tag"}, "maxItems": 3},
            },
            "required": ["name", "tags"],
            "additionalProperties": False,
            "$defs": {"tag": {"type": "string", "enum": ["a", "b"]}},
        },
    },
}

# The same with every string bounded: the random demo model, sampling, finishes it in time.
BOUNDED_PERSON = json.loads(json.dumps(PERSON))
BOUNDED_PERSON["json_schema"]["schema"]["properties"]["name"]["maxLength"] = 16


def _body(**overrides: Any) -> dict[str, Any]:
    return {
        "model": "remote-model",
        "messages": [{"role": "user", "content": "Weather in Oslo and Lima?"}],
        "tools": [WEATHER],
        **overrides,
    }


async def _remote_key(alice: User, bob: User, upstream: FakeUpstream) -> str:
    await database_sync_to_async(remote_model_register)(alice, upstream)
    return await database_sync_to_async(api_key_mint)(bob)


async def test_streamed_tool_calls_arrive_as_openai_deltas_and_are_recorded(
    alice: User, bob: User, upstream: FakeUpstream
) -> None:
    upstream.tool_calls = CALLS
    key = await _remote_key(alice, bob, upstream)
    response = await v1_post(
        _body(
            tool_choice="auto", parallel_tool_calls=True, stream=True, stream_options={"include_usage": True}
        ),
        key=key,
        **{"X-Request-ID": "tools-1"},
    )
    assert response.status_code == 200, response.text
    first, *middle, finish, usage, done = sse_events(response)
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    deltas = [delta for chunk in middle for delta in chunk["choices"][0]["delta"]["tool_calls"]]
    assert deltas[0] == {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    for index, call in enumerate(CALLS):
        pieces = [delta["function"]["arguments"] for delta in deltas if delta["index"] == index]
        assert "".join(pieces) == call["function"]["arguments"]
    assert finish["choices"][0]["finish_reason"] == "tool_calls"
    assert usage["usage"]["completion_tokens"] == len(upstream.words)  # the upstream's own figure
    assert done == "[DONE]"
    sent = upstream.requests[-1]["body"]
    assert sent["tools"] == [WEATHER]
    assert (sent["tool_choice"], sent["parallel_tool_calls"]) == ("auto", True)
    event = await database_sync_to_async(AuditEvent.objects.get)(action="inference.completed")
    assert event.request_id == "tools-1"
    assert event.metadata["finish_reason"] == "tool_calls"
    assert event.metadata["features"] == ["parallel_tool_calls", "tool_choice", "tools"]
    assert await database_sync_to_async(usage_records_flush)() == 1
    record = await database_sync_to_async(UsageRecord.objects.get)()
    assert record.completion_tokens == len(upstream.words)


async def test_a_whole_answer_carries_the_calls_and_no_content(
    alice: User, bob: User, upstream: FakeUpstream
) -> None:
    upstream.tool_calls = CALLS
    key = await _remote_key(alice, bob, upstream)
    choice = {"type": "function", "function": {"name": "get_weather"}}
    response = await v1_post(_body(tool_choice=choice), key=key)
    assert response.status_code == 200, response.text
    answer = response.json()["choices"][0]
    assert answer["finish_reason"] == "tool_calls"
    assert answer["message"]["content"] is None
    assert answer["message"]["tool_calls"] == CALLS
    sent = upstream.requests[-1]["body"]
    assert sent["stream"] is False
    assert sent["tool_choice"] == choice


async def test_a_conversation_with_tool_results_reaches_the_upstream_verbatim(
    alice: User, bob: User, upstream: FakeUpstream
) -> None:
    key = await _remote_key(alice, bob, upstream)
    messages = [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": None, "tool_calls": CALLS[:1]},
        {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "4 C, rain"}]},
    ]
    response = await v1_post(_body(messages=messages), key=key)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "".join(upstream.words)
    assert upstream.requests[-1]["body"]["messages"] == [
        messages[0],
        messages[1],
        {"role": "tool", "tool_call_id": "call_1", "content": "4 C, rain"},
    ]


async def test_structured_output_is_passed_through(alice: User, bob: User, upstream: FakeUpstream) -> None:
    upstream.words = ['{"name": ', '"Ada", ', '"tags": ["a"]}']
    key = await _remote_key(alice, bob, upstream)
    body = _body(response_format=PERSON)
    del body["tools"]
    response = await v1_post(body, key=key)
    assert response.status_code == 200, response.text
    assert json.loads(response.json()["choices"][0]["message"]["content"]) == {"name": "Ada", "tags": ["a"]}
    assert upstream.requests[-1]["body"]["response_format"] == PERSON
    event = await database_sync_to_async(AuditEvent.objects.get)(action="inference.completed")
    assert event.metadata["features"] == ["response_format"]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_a_call_to_a_tool_nobody_offered_is_a_502_failed_and_charged_nothing_more(
    alice: User, bob: User, upstream: FakeUpstream, stream: bool
) -> None:
    upstream.tool_calls = [{**CALLS[0], "function": {"name": "rm_rf", "arguments": "{}"}}]
    key = await _remote_key(alice, bob, upstream)
    await database_sync_to_async(QuotaPolicy.objects.create)(
        name="bob-limits", user=bob, tokens_per_day=100_000, concurrent_streams=1
    )
    response = await v1_post(_body(stream=stream), key=key)
    # The bad call is the upstream's first piece: nothing was sent, so a stream never began.
    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert error["type"] == "server_error"
    assert error["code"] == "bad_upstream"
    assert error["message"] == "The model's server sent a malformed answer; try again, or another model."
    event = await database_sync_to_async(AuditEvent.objects.get)(action="inference.failed")
    assert "malformed tool call" in event.metadata["reason"]
    # Nothing was passed on, so nothing is charged; the stream's place goes back (one at most).
    assert await database_sync_to_async(quota_counter_used)(bob, "tokens") == 0
    upstream.tool_calls = None
    again = await v1_post(_body(), key=key)
    assert again.status_code == 200, again.text


async def test_a_local_version_without_a_tool_call_format_refuses_tools_clearly(
    bob: User, demo_version: ModelVersion
) -> None:
    await database_sync_to_async(model_version_update)(
        version=demo_version, changes={"tool_call_format": ""}, actor=None
    )
    key = await database_sync_to_async(api_key_mint)(bob)
    tools = await v1_post(_body(model="demo-tiny"), key=key)
    assert tools.status_code == 400, tools.text
    assert tools.json()["error"]["message"] == (
        "Model 'demo-tiny' does not support tools: its version v1 has no tool-call format."
    )
    # Text ("text" as the format, no tool chosen) still works: the refusal left nothing held.
    plain = await v1_post(
        {
            "model": "demo-tiny",
            "messages": [{"role": "user", "content": "x"}],
            "max_tokens": 2,
            "response_format": {"type": "text"},
            "tool_choice": "none",
        },
        key=key,
    )
    assert plain.status_code == 200, plain.text


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_a_local_version_answers_structured_output_under_its_grammar(
    bob: User, demo_version: ModelVersion, stream: bool
) -> None:
    key = await database_sync_to_async(api_key_mint)(bob)
    body = {
        "model": "demo-tiny",
        "messages": [{"role": "user", "content": "Who?"}],
        "max_tokens": 200,
        "response_format": BOUNDED_PERSON,
        "stream": stream,
    }
    response = await v1_post(body, key=key)
    assert response.status_code == 200, response.text
    if stream:
        chunks = [event for event in sse_events(response)[:-1] if event["choices"]]
        text = "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks)
        finish = chunks[-1]["choices"][0]["finish_reason"]
    else:
        choice = response.json()["choices"][0]
        text, finish = choice["message"]["content"], choice["finish_reason"]
    assert finish == "stop", text
    jsonschema.validate(json.loads(text), BOUNDED_PERSON["json_schema"]["schema"])


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "s", "strict": True, "schema": schema}}


_OBJECT = {"type": "object", "additionalProperties": False}
INVALID = {
    "bad-name": (
        {"tools": [{"type": "function", "function": {"name": "no spaces"}}]},
        "tools[0].function.name: must be 1 to 64 letters, digits, underscores or dashes.",
    ),
    "same-name": (
        {"tools": [WEATHER, WEATHER]},
        "tools[1].function.name: the name 'get_weather' is used by another tool.",
    ),
    "not-a-function": ({"tools": [{"type": "retrieval"}]}, "tools[0]: must be an object of type 'function'."),
    "choice-unknown": (
        {"tool_choice": {"type": "function", "function": {"name": "nope"}}},
        "tool_choice: names 'nope', which is not one of the tools.",
    ),
    "required-without-tools": ({"tools": None, "tool_choice": "required"}, "tool_choice: 'required' needs tools."),
    "parallel-not-bool": ({"parallel_tool_calls": "yes"}, "parallel_tool_calls: must be a boolean."),
    "format-type": (
        {"response_format": {"type": "yaml"}},
        "response_format: type must be 'text', 'json_object' or 'json_schema'.",
    ),
    "format-no-name": (
        {"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}},
        "response_format.json_schema.name: must be 1 to 64 letters, digits, underscores or dashes.",
    ),
    "strict-keyword": (
        {"response_format": _strict({**_OBJECT, "patternProperties": {}})},
        "response_format.json_schema.schema: 'patternProperties' is not supported in strict mode (at #).",
    ),
    "strict-open-object": (
        {"response_format": _strict({"type": "object", "properties": {}, "required": []})},
        "response_format.json_schema.schema: every object must set 'additionalProperties' to false "
        "in strict mode (at #).",
    ),
    "strict-optional": (
        {"response_format": _strict({**_OBJECT, "properties": {"a": {"type": "string"}}, "required": []})},
        "response_format.json_schema.schema: 'required' must list every property in strict mode (at #).",
    ),
    "strict-dangling-ref": (
        {"response_format": _strict({**_OBJECT, "properties": {"a": {"$ref": "#/$defs/x"}}, "required": ["a"]})},
        "response_format.json_schema.schema: '$ref' must point to '#' or into '$defs', not \"#/$defs/x\" "
        "(at #/properties/a).",
    ),
    "strict-format": (
        {"response_format": _strict({**_OBJECT, "properties": {"a": {"type": "string", "format": "iban"}}, "required": ["a"]})},
        "response_format.json_schema.schema: the format 'iban' is not supported in strict mode (at #/properties/a).",
    ),
    "strict-tool-root": (
        {"tools": [{"type": "function", "function": {"name": "f", "strict": True, "parameters": {"type": "array"}}}]},
        "tools[0].function.parameters: a strict schema's root must be of type 'object'.",
    ),
    "tool-message-without-call": (
        {"messages": [{"role": "tool", "content": "4 C"}]},
        "messages[0]: a tool message must name the call it answers (tool_call_id).",
    ),
    "assistant-call-without-arguments": (
        {"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f"}}]}]},
        "messages[0].tool_calls[0]: must be an object with an id, type 'function' and a function's name and "
        "arguments (a string).",
    ),
}  # fmt: skip


@pytest.mark.parametrize(("overrides", "message"), INVALID.values(), ids=INVALID.keys())
async def test_invalid_tools_and_formats_are_400s_naming_the_field(
    alice: User, bob: User, upstream: FakeUpstream, overrides: dict[str, Any], message: str
) -> None:
    key = await _remote_key(alice, bob, upstream)
    response = await v1_post(
        {key: value for key, value in _body(**overrides).items() if value is not None}, key=key
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["type"], error["message"]) == ("invalid_request_error", message)
    assert upstream.requests == []
    assert not await database_sync_to_async(
        AuditEvent.objects.filter(action__startswith="inference.").exists
    )()


@override_settings(GATEHOUSE_REMOTE_GENERATION="worker")
async def test_a_remote_version_called_by_a_worker_refuses_tools(
    alice: User, bob: User, upstream: FakeUpstream
) -> None:
    key = await _remote_key(alice, bob, upstream)
    response = await v1_post(_body(), key=key)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"] == (
        "Model 'remote-model' does not support tools: its version r1 is called by a worker."
    )
    assert upstream.requests == []

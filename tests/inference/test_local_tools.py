"""Tools on a local version: offered through its chat template, its calls read from its text
in its tool-call format, and with `required` or a named tool, decoded under a grammar so the
call is always valid for the function's parameters."""

import json
from typing import Any

import jsonschema
import pytest
from channels.db import database_sync_to_async

from accounts.models import User
from inference.chat.tool_call_reading import ToolCallReader
from inference.engines.base import ChatMessage
from inference.engines.local import LocalTransformersEngine
from inference.models import ModelVersion
from tests.inference.fast_path import api_key_mint, sse_events, v1_post

PARAMETERS = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 8}, "unit": {"enum": ["c", "f"]}},
    "required": ["city", "unit"],
    "additionalProperties": False,
}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": PARAMETERS}},
    {"type": "function", "function": {"name": "get_time"}},
]


def _body(**overrides: Any) -> dict[str, Any]:
    return {
        "model": "demo-tiny",
        "messages": [{"role": "user", "content": "Weather in Oslo?"}],
        "tools": TOOLS,
        "max_tokens": 150,
        **overrides,
    }


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("inference_backend")
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_a_named_tool_is_always_called_with_valid_arguments(
    bob: User, demo_version: ModelVersion, stream: bool
) -> None:
    key = await database_sync_to_async(api_key_mint)(bob)
    choice = {"type": "function", "function": {"name": "get_weather"}}
    for temperature in (0.0, 1.0, 1.5):
        response = await v1_post(_body(tool_choice=choice, temperature=temperature, stream=stream), key=key)
        assert response.status_code == 200, response.text
        if stream:
            chunks = [event for event in sse_events(response)[:-1] if event["choices"]]
            deltas = [
                delta for chunk in chunks for delta in chunk["choices"][0]["delta"].get("tool_calls", [])
            ]
            (call,) = deltas  # a local call arrives whole, once its closing tag is read
            finish = chunks[-1]["choices"][0]["finish_reason"]
            text = "".join(chunk["choices"][0]["delta"].get("content") or "" for chunk in chunks)
        else:
            message = response.json()["choices"][0]
            (call,) = message["message"]["tool_calls"]
            finish, text = message["finish_reason"], message["message"]["content"] or ""
        assert (finish, text) == ("tool_calls", "")
        assert call["function"]["name"] == "get_weather"
        assert call["id"].startswith("call_")
        jsonschema.validate(json.loads(call["function"]["arguments"]), PARAMETERS)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("inference_backend")
async def test_required_calls_one_of_the_offered_tools(bob: User, demo_version: ModelVersion) -> None:
    key = await database_sync_to_async(api_key_mint)(bob)
    response = await v1_post(_body(tool_choice="required", temperature=1.0), key=key)
    assert response.status_code == 200, response.text
    (call,) = response.json()["choices"][0]["message"]["tool_calls"]
    assert call["function"]["name"] in {"get_weather", "get_time"}
    json.loads(call["function"]["arguments"])


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("inference_backend")
async def test_auto_and_none_let_the_model_answer_in_text(bob: User, demo_version: ModelVersion) -> None:
    key = await database_sync_to_async(api_key_mint)(bob)
    for choice in ("auto", "none"):
        response = await v1_post(_body(tool_choice=choice, max_tokens=8, temperature=0), key=key)
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["finish_reason"] in ("stop", "length")


def test_the_template_offers_the_tools_and_shows_earlier_calls_and_results(
    engine: LocalTransformersEngine,
) -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
    }
    messages = [
        ChatMessage(role="user", content="Weather in Oslo?"),
        ChatMessage(role="assistant", content="", tool_calls=[call]),
        ChatMessage(role="tool", content="4 C, rain", tool_call_id="call_1"),
    ]
    prompt = engine.tokenizer.decode(engine.encode_prompt(messages, tools=TOOLS))
    assert prompt.startswith('<|tools|>\n{"name": "get_weather", "parameters": ')  # offered first
    assert '<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>' in prompt
    assert prompt.endswith("<|tool|>\n4 C, rain\n<|assistant|>\n")


class _Heard:
    def __init__(self) -> None:
        self.said: list[tuple[str, Any]] = []

    async def texts(self, texts: list[str]) -> None:
        self.said.append(("text", "".join(texts)))

    async def calls(self, deltas: list[dict[str, Any]]) -> None:
        self.said.append(("call", deltas[0]["function"]))


async def _read(pieces: list[str]) -> list[tuple[str, Any]]:
    heard = _Heard()
    reader = ToolCallReader(
        tool_call_format="hermes",
        call_id_prefix="call_x",
        names=frozenset({"f"}),
        on_texts=heard.texts,
        on_tool_calls=heard.calls,
    )
    for piece in pieces:
        await reader.feed([piece])
    await reader.finish()
    return heard.said


async def test_the_reader_finds_calls_split_across_pieces() -> None:
    said = await _read(
        ["Sure. <to", "ol_call>", '{"name": "f", "argu', 'ments": {"a": 1}}</tool', "_call>", " Done"]
    )
    assert said == [
        ("text", "Sure. "),
        ("call", {"name": "f", "arguments": '{"a": 1}'}),
        ("text", " Done"),
    ]


@pytest.mark.parametrize(
    "written",
    [
        '<tool_call>{"name": "g", "arguments": {}}</tool_call>',
        "<tool_call>not json</tool_call>",
        '<tool_call>{"name": "f"',
    ],
    ids=["unoffered-tool", "bad-json", "never-closed"],
)
async def test_what_is_not_a_call_to_an_offered_tool_is_passed_on_as_text(written: str) -> None:
    said = await _read([written[:7], written[7:]])
    assert "".join(text for kind, text in said if kind == "text") == written
    assert all(kind == "text" for kind, _ in said)


async def test_text_that_only_looks_like_a_tag_start_goes_on_at_the_end() -> None:
    assert await _read(["a <tool", "box> b <"]) == [("text", "a "), ("text", "<toolbox> b "), ("text", "<")]

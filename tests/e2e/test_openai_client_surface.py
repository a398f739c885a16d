"""The official `openai` package's tools, structured outputs, text completions and embeddings
against a served Gatehouse, with local versions and remote ones (a fake upstream on loopback)."""

import json
import uuid
from collections.abc import Iterator
from typing import Literal

import openai
import pydantic
import pytest

from tests.e2e.server import ServedGatehouse
from tests.fake_openai import FakeUpstream, fake_upstream

pytestmark = pytest.mark.e2e


class Weather(pydantic.BaseModel):
    """The weather in a city."""

    city: str
    unit: str | None


class Tag(pydantic.BaseModel):
    label: str


class Person(pydantic.BaseModel):
    name: str
    age: int | None
    tags: list[Tag]


CALL = {
    "id": "call_7",
    "type": "function",
    "function": {"name": "Weather", "arguments": '{"city": "Oslo", "unit": null}'},
}


@pytest.fixture(scope="module")
def client(gatehouse: ServedGatehouse, chat_key: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{gatehouse.base_url}/v1", api_key=chat_key, max_retries=0) as client:
        yield client


@pytest.fixture
def calling(upstream: FakeUpstream) -> Iterator[None]:
    upstream.tool_calls = [CALL]
    yield
    upstream.tool_calls = None


@pytest.mark.usefixtures("calling")
def test_tools_whole_and_streamed(client: openai.OpenAI, remote_model: str, upstream: FakeUpstream) -> None:
    tool = openai.pydantic_function_tool(Weather)
    messages = [{"role": "user", "content": "Weather in Oslo?"}]
    whole = client.chat.completions.create(model=remote_model, messages=messages, tools=[tool])
    (call,) = whole.choices[0].message.tool_calls or []
    assert (whole.choices[0].finish_reason, call.id, call.function.name) == (
        "tool_calls",
        "call_7",
        "Weather",
    )
    assert json.loads(call.function.arguments) == {"city": "Oslo", "unit": None}
    assert upstream.requests[-1]["body"]["tools"][0]["function"]["strict"] is True

    with client.chat.completions.stream(model=remote_model, messages=messages, tools=[tool]) as stream:
        final = stream.get_final_completion()
    (streamed,) = final.choices[0].message.tool_calls or []
    assert streamed.function.parsed_arguments == Weather(city="Oslo", unit=None)
    assert final.choices[0].finish_reason == "tool_calls"


def test_structured_output_is_parsed_by_the_client(
    client: openai.OpenAI, remote_model: str, upstream: FakeUpstream
) -> None:
    upstream.words = ['{"name": "Ada", ', '"age": null, "tags": ', '[{"label": "math"}]}']
    try:
        parsed = client.chat.completions.parse(
            model=remote_model, messages=[{"role": "user", "content": "Ada?"}], response_format=Person
        )
    finally:
        upstream.words = [f"word{index} " for index in range(8)]
    assert parsed.choices[0].message.parsed == Person(name="Ada", age=None, tags=[Tag(label="math")])
    assert upstream.requests[-1]["body"]["response_format"]["json_schema"]["name"] == "Person"


def test_a_local_model_calls_a_required_tool(client: openai.OpenAI) -> None:
    class Clock(pydantic.BaseModel):
        """The time in a zone."""

        zone: Literal["utc", "cet"]

    completion = client.chat.completions.parse(
        model="demo-tiny",
        messages=[{"role": "user", "content": "What time is it?"}],
        tools=[openai.pydantic_function_tool(Clock)],
        tool_choice="required",
        max_tokens=80,
    )
    (call,) = completion.choices[0].message.tool_calls or []
    assert completion.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "Clock"
    assert isinstance(call.function.parsed_arguments, Clock)


@pytest.mark.parametrize("model", ["demo-tiny", "remote"])
def test_text_completions_whole_and_streamed(client: openai.OpenAI, remote_model: str, model: str) -> None:
    name = remote_model if model == "remote" else model
    whole = client.completions.create(model=name, prompt="Once upon a time", max_tokens=12, temperature=0)
    assert whole.object == "text_completion"
    assert whole.usage is not None
    assert whole.usage.completion_tokens <= 12
    streamed = client.completions.create(
        model=name, prompt="Once upon a time", max_tokens=12, temperature=0, stream=True
    )
    texts, finish = [], None
    for chunk in streamed:
        texts.append(chunk.choices[0].text)
        finish = chunk.choices[0].finish_reason or finish
    assert "".join(texts) == whole.choices[0].text
    assert finish == whole.choices[0].finish_reason


def test_structured_output_from_the_local_model_parses(client: openai.OpenAI) -> None:
    class Answer(pydantic.BaseModel):
        verdict: Literal["yes", "no"]
        score: int = pydantic.Field(ge=0, le=9)

    parsed = client.chat.completions.parse(
        model="demo-tiny",
        messages=[{"role": "user", "content": "Well?"}],
        response_format=Answer,
        max_tokens=64,
    )
    assert isinstance(parsed.choices[0].message.parsed, Answer)


def test_embeddings_from_the_local_encoder_and_a_remote_one(
    gatehouse: ServedGatehouse, client: openai.OpenAI, upstream: FakeUpstream
) -> None:
    local = client.embeddings.create(model="demo-embed", input=["first text", "second text"])
    assert [len(row.embedding) for row in local.data] == [64, 64]
    assert local.usage.prompt_tokens == len("first text") + len("second text")
    # The client asks for base64 by default and decodes it itself: same vectors as floats.
    floats = client.embeddings.create(model="demo-embed", input="first text", encoding_format="float")
    assert floats.data[0].embedding == pytest.approx(local.data[0].embedding, abs=1e-6)

    name = f"embed-{uuid.uuid4().hex[:6]}"
    gatehouse.manage(
        "shell",
        "-c",
        "from inference.models import Model; "
        "from inference.services import model_register, model_version_promote; "
        "from inference.services.registry import model_version_register_remote; "
        f"model = model_register(name={name!r}, open_to_all=True, kind=Model.Kind.EMBEDDING, actor=None); "
        "version = model_version_register_remote(model=model, label='e1', "
        f"base_url={upstream.base_url!r}, remote_model='upstream-embed', actor=None); "
        "model_version_promote(version=version, actor=None)",
    )
    remote = client.embeddings.create(model=name, input=["hi", "there"], encoding_format="float")
    assert [row.embedding for row in remote.data] == [[2.0, 104.0, 0.5], [5.0, 116.0, 0.5]]
    with pytest.raises(openai.BadRequestError, match="is a chat model"):
        client.embeddings.create(model="demo-tiny", input="x")


@pytest.mark.parametrize("model", ["demo-tiny", "remote"])
def test_logprobs_whole_and_streamed(client: openai.OpenAI, remote_model: str, model: str) -> None:
    name = remote_model if model == "remote" else model
    messages = [{"role": "user", "content": "hi"}]
    asked = {"model": name, "messages": messages, "max_tokens": 8, "temperature": 0, "logprobs": True}
    whole = client.chat.completions.create(**asked, top_logprobs=2)
    choice = whole.choices[0]
    assert choice.logprobs is not None
    assert choice.logprobs.content
    tokens = [entry.token for entry in choice.logprobs.content]
    assert all(len(entry.top_logprobs) == 2 for entry in choice.logprobs.content)
    assert (
        b"".join(bytes(entry.bytes or []) for entry in choice.logprobs.content)
        == (choice.message.content or "").encode()
    )
    streamed = client.chat.completions.create(**asked, top_logprobs=2, stream=True)
    streamed_tokens = [
        entry.token
        for chunk in streamed
        if chunk.choices and chunk.choices[0].logprobs
        for entry in chunk.choices[0].logprobs.content or []
    ]
    assert streamed_tokens == tokens
    with pytest.raises(openai.BadRequestError, match="top_logprobs must be an integer from 0 to 20"):
        client.chat.completions.create(**asked, top_logprobs=21)


@pytest.mark.parametrize("model", ["demo-tiny", "remote"])
def test_several_choices_whole_and_streamed(client: openai.OpenAI, remote_model: str, model: str) -> None:
    name = remote_model if model == "remote" else model
    asked = {"model": name, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 6, "n": 3}
    whole = client.chat.completions.create(**asked)
    assert [choice.index for choice in whole.choices] == [0, 1, 2]
    assert all(choice.finish_reason in ("stop", "length") for choice in whole.choices)
    finishes = {
        chunk.choices[0].index: chunk.choices[0].finish_reason
        for chunk in client.chat.completions.create(**asked, stream=True)
        if chunk.choices and chunk.choices[0].finish_reason
    }
    assert sorted(finishes) == [0, 1, 2]


def test_a_model_that_cannot_answer_falls_back_or_fails_before_its_stream(
    client: openai.OpenAI, gatehouse: ServedGatehouse, remote_model: str
) -> None:
    falling, failing = f"falling-{uuid.uuid4().hex[:6]}", f"failing-{uuid.uuid4().hex[:6]}"
    with fake_upstream() as down:
        down.mode = "always_503"
        for name, fallbacks in ((falling, [remote_model]), (failing, [])):
            gatehouse.manage(
                "shell", "-c",
                "from inference.services import model_register, model_serving_update, model_version_promote; "
                "from inference.services.registry import model_version_register_remote; "
                f"model = model_register(name={name!r}, open_to_all=True, actor=None); "
                "version = model_version_register_remote(model=model, label='r1', "
                f"base_url={down.base_url!r}, remote_model='upstream-model', actor=None); "
                "model_version_promote(version=version, actor=None); "
                f"model_serving_update(model=model, changes={{'fallback_models': {fallbacks!r}}}, actor=None)",
            )  # fmt: skip
        messages = [{"role": "user", "content": "hi"}]
        # The client reads who answered from the answer itself, whole or streamed.
        assert client.chat.completions.create(model=falling, messages=messages).model == remote_model
        chunks = list(client.chat.completions.create(model=falling, messages=messages, stream=True))
        assert {chunk.model for chunk in chunks} == {remote_model}
        # With nothing to fall back to, a stream that never began is the client's error at once.
        with pytest.raises(openai.InternalServerError) as refused:
            client.chat.completions.create(model=failing, messages=messages, stream=True)
        assert refused.value.status_code == 503

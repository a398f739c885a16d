"""LangChain's OpenAI integration against a served Gatehouse, as an application would use it:
chat, streaming, structured output, tool calling and embeddings, with no change but the URL."""

from collections.abc import Iterator

import pydantic
import pytest
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI, OpenAIEmbeddings

from tests.e2e.server import ServedGatehouse
from tests.fake_openai import FakeUpstream

pytestmark = pytest.mark.e2e


class Verdict(pydantic.BaseModel):
    answer: str = pydantic.Field(max_length=8)
    sure: bool


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"4 C in {city}"


def _chat(gatehouse: ServedGatehouse, key: str, model: str, **settings: object) -> ChatOpenAI:
    return ChatOpenAI(
        model=model, base_url=f"{gatehouse.base_url}/v1", api_key=key, max_retries=0, **settings
    )


def test_chat_stream_and_structured_output_on_the_local_model(
    gatehouse: ServedGatehouse, chat_key: str
) -> None:
    llm = _chat(gatehouse, chat_key, "demo-tiny", max_tokens=8, temperature=0)
    reply = llm.invoke("Hello")
    assert isinstance(reply.content, str)
    assert reply.usage_metadata is not None
    assert reply.usage_metadata["output_tokens"] <= 8
    streamed = "".join(str(chunk.content) for chunk in llm.stream("Hello"))
    assert streamed == reply.content  # greedy: the same answer either way
    structured = _chat(gatehouse, chat_key, "demo-tiny", max_tokens=80).with_structured_output(Verdict)
    assert isinstance(structured.invoke("Well?"), Verdict)


@pytest.fixture
def calling(upstream: FakeUpstream) -> Iterator[None]:
    upstream.tool_calls = [
        {
            "id": "call_3",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Lima"}'},
        }
    ]
    yield
    upstream.tool_calls = None


@pytest.mark.usefixtures("calling")
def test_tool_calls_on_a_remote_model(gatehouse: ServedGatehouse, chat_key: str, remote_model: str) -> None:
    llm = _chat(gatehouse, chat_key, remote_model).bind_tools([get_weather])
    (call,) = llm.invoke("Weather in Lima?").tool_calls
    assert (call["name"], call["args"], call["id"]) == ("get_weather", {"city": "Lima"}, "call_3")


def test_embeddings_from_the_local_encoder(gatehouse: ServedGatehouse, chat_key: str) -> None:
    # Without the context check, which tokenizes with OpenAI's own vocabularies (a download).
    embeddings = OpenAIEmbeddings(
        model="demo-embed",
        base_url=f"{gatehouse.base_url}/v1",
        api_key=chat_key,
        check_embedding_ctx_length=False,
        max_retries=0,
    )
    documents = embeddings.embed_documents(["first text", "second text"])
    assert [len(vector) for vector in documents] == [64, 64]
    assert embeddings.embed_query("first text") == pytest.approx(documents[0], abs=1e-6)

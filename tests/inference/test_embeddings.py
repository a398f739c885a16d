"""`POST /v1/embeddings`: vectors from the local demo encoder and from a remote version,
governed as chats are (the kind checked, charged by the inputs' tokens, audited, counted)."""

import base64
import math
import struct
from typing import Any

import pytest
from channels.db import database_sync_to_async

from accounts.models import QuotaPolicy, UsageRecord, User
from accounts.services.usage import usage_records_flush
from audit.models import AuditEvent
from inference.models import Model, ModelVersion
from inference.services import model_register, model_version_promote, model_version_register_remote
from tests.accounts.helpers import quota_counter_used
from tests.fake_openai import FakeUpstream
from tests.inference.fast_path import api_key_mint, v1_post
from tests.waiting import completed_audit_event_for, eventually

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("inference_backend")]

URL = "/v1/embeddings"


def _remote_embedder(alice: User, upstream: FakeUpstream) -> ModelVersion:
    model = model_register(name="remote-embed", open_to_all=True, kind=Model.Kind.EMBEDDING, actor=alice)
    version = model_version_register_remote(
        model=model, label="e1", base_url=upstream.base_url, remote_model="upstream-embed", actor=alice
    )
    return model_version_promote(version=version, actor=alice)


def _norm(vector: list[float]) -> float:
    return math.sqrt(sum(value * value for value in vector))


async def test_local_inputs_become_unit_vectors_charged_by_their_tokens(
    bob: User, demo_embed_version: ModelVersion
) -> None:
    key = await database_sync_to_async(api_key_mint)(bob)
    await database_sync_to_async(QuotaPolicy.objects.create)(name="bob", user=bob, tokens_per_day=10_000)
    inputs = ["hello", "a longer sentence", "hello"]
    response = await v1_post(
        {"model": "demo-embed", "input": inputs}, key=key, url=URL, **{"X-Request-ID": "embed-1"}
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["object"], answer["model"]) == ("list", "demo-embed")
    vectors = [row["embedding"] for row in answer["data"]]
    assert [row["index"] for row in answer["data"]] == [0, 1, 2]
    assert all(len(vector) == 64 and abs(_norm(vector) - 1) < 1e-5 for vector in vectors)
    assert vectors[0] == vectors[2]
    assert vectors[0] != vectors[1]
    # The byte-level demo tokenizer: a token per byte, and nothing added around an input.
    tokens = sum(len(text.encode()) for text in inputs)
    assert answer["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    event = await eventually(completed_audit_event_for(request_id="embed-1"))
    assert (event.metadata["prompt_tokens"], event.metadata["completion_tokens"]) == (tokens, 0)
    assert event.metadata["inputs"] == 3
    assert await database_sync_to_async(quota_counter_used)(bob, "tokens") == tokens
    assert await database_sync_to_async(usage_records_flush)() == 1
    assert (await database_sync_to_async(UsageRecord.objects.get)()).prompt_tokens == tokens


async def test_base64_and_fewer_dimensions(bob: User, demo_embed_version: ModelVersion) -> None:
    key = await database_sync_to_async(api_key_mint)(bob)
    full = (await v1_post({"model": "demo-embed", "input": "hello"}, key=key, url=URL)).json()["data"][0]
    packed = await v1_post(
        {"model": "demo-embed", "input": "hello", "encoding_format": "base64"}, key=key, url=URL
    )
    raw = base64.b64decode(packed.json()["data"][0]["embedding"])
    assert list(struct.unpack(f"<{len(raw) // 4}f", raw)) == pytest.approx(full["embedding"], abs=1e-6)
    cut = await v1_post({"model": "demo-embed", "input": "hello", "dimensions": 16}, key=key, url=URL)
    assert cut.status_code == 200, cut.text
    vector = cut.json()["data"][0]["embedding"]
    assert len(vector) == 16
    assert abs(_norm(vector) - 1) < 1e-5
    # The first 16 of the whole vector, scaled back to unit length.
    prefix = full["embedding"][:16]
    assert vector == pytest.approx([value / _norm(prefix) for value in prefix], abs=1e-5)


async def test_a_remote_version_is_asked_at_its_own_embeddings(
    alice: User, bob: User, upstream: FakeUpstream
) -> None:
    await database_sync_to_async(_remote_embedder)(alice, upstream)
    key = await database_sync_to_async(api_key_mint)(bob)
    response = await v1_post(
        {"model": "remote-embed", "input": ["hi", "there"], "dimensions": 3}, key=key, url=URL
    )
    assert response.status_code == 200, response.text
    # Put back in the inputs' order (the upstream answered them reversed, with their indexes).
    assert [row["embedding"] for row in response.json()["data"]] == [[2.0, 104.0, 0.5], [5.0, 116.0, 0.5]]
    assert response.json()["usage"]["prompt_tokens"] == 6
    sent = upstream.requests[-1]
    assert sent["path"] == "/v1/embeddings"
    assert sent["body"] == {
        "model": "upstream-embed",
        "input": ["hi", "there"],
        "encoding_format": "float",
        "dimensions": 3,
    }
    event = await database_sync_to_async(AuditEvent.objects.get)(action="inference.completed")
    assert (event.metadata["prompt_tokens"], event.metadata["inputs"]) == (6, 2)


@pytest.mark.parametrize(
    "data",
    [
        [{"index": 0, "embedding": [1.0]}],  # one vector for two inputs
        [{"index": 0, "embedding": [1.0]}, {"index": 1, "embedding": ["x"]}],
        [{"index": 0, "embedding": [1.0]}, {"index": 1, "embedding": [1.0, 2.0]}],
        [{"index": 0, "embedding": [1.0]}, {"index": 0, "embedding": [1.0]}],
    ],
    ids=["too-few", "not-numbers", "ragged", "same-index"],
)
async def test_malformed_remote_embeddings_are_a_502_recorded_as_failed(
    alice: User, bob: User, upstream: FakeUpstream, data: list[Any]
) -> None:
    upstream.embeddings = data
    await database_sync_to_async(_remote_embedder)(alice, upstream)
    key = await database_sync_to_async(api_key_mint)(bob)
    response = await v1_post({"model": "remote-embed", "input": ["a", "b"]}, key=key, url=URL)
    assert response.status_code == 502, response.text
    assert response.json()["error"]["code"] == "bad_upstream"
    event = await database_sync_to_async(AuditEvent.objects.get)(action="inference.failed")
    assert "malformed embeddings" in event.metadata["reason"]


async def test_each_door_refuses_the_other_kind_of_model(
    bob: User, demo_version: ModelVersion, demo_embed_version: ModelVersion
) -> None:
    key = await database_sync_to_async(api_key_mint)(bob)
    chat_model = await v1_post({"model": "demo-tiny", "input": "x"}, key=key, url=URL)
    assert chat_model.status_code == 400
    assert (
        chat_model.json()["error"]["message"]
        == "Model 'demo-tiny' is a chat model; it does not make embeddings."
    )
    for url, body in [
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}]}),
        ("/v1/completions", {"prompt": "x"}),
    ]:
        embedder = await v1_post({"model": "demo-embed", **body}, key=key, url=url)
        assert embedder.status_code == 400, embedder.text
        assert embedder.json()["error"]["message"] == (
            "Model 'demo-embed' is an embedding model; ask it at /v1/embeddings."
        )


INVALID = {
    "no-input": ({}, "input: you must provide an input."),
    "empty-string": ({"input": ""}, "input[0]: must be a string of 1 to 32000 characters."),
    "empty-list": ({"input": []}, "input: must be a string or a list of 1 to 2048 strings."),
    "too-many": ({"input": ["x"] * 2049}, "input: must be a string or a list of 1 to 2048 strings."),
    "token-arrays": ({"input": [[1, 2]]}, "input[0]: must be text (token arrays are not supported)."),
    "format": ({"input": "x", "encoding_format": "int8"}, "encoding_format: must be 'float' or 'base64'."),
    "dimensions-zero": ({"input": "x", "dimensions": 0}, "dimensions: must be a positive integer."),
    "unknown-field": ({"input": "x", "truncate": True}, "truncate: Unrecognized request argument supplied: truncate"),
    "no-model": ({"model": None, "input": "x"}, "model: must be a model name."),
    "longer-than-the-context-in-tokens": (
        {"input": "x" * 600},
        "The input cannot be embedded: input[0] is 600 tokens; this model embeds at most 512.",
    ),
    "more-dimensions-than-the-model": (
        {"input": "x", "dimensions": 65},
        "The input cannot be embedded: dimensions must be from 1 to 64 for this model.",
    ),
}  # fmt: skip


@pytest.mark.parametrize(("overrides", "message"), INVALID.values(), ids=INVALID.keys())
async def test_invalid_requests_are_400s_that_say_why_and_hold_nothing(
    bob: User, demo_embed_version: ModelVersion, overrides: dict[str, Any], message: str
) -> None:
    key = await database_sync_to_async(api_key_mint)(bob)
    await database_sync_to_async(QuotaPolicy.objects.create)(name="bob", user=bob, tokens_per_day=100_000)
    response = await v1_post({"model": "demo-embed", **overrides}, key=key, url=URL)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"] == message
    assert await database_sync_to_async(quota_counter_used)(bob, "tokens") == 0


async def test_once_loaded_an_input_beyond_the_context_by_bytes_is_refused_at_admission(
    bob: User, demo_embed_version: ModelVersion
) -> None:
    key = await database_sync_to_async(api_key_mint)(bob)
    # Loading the model tells admission its tokens' size: 13 bytes at most (<|endoftext|>).
    assert (await v1_post({"model": "demo-embed", "input": "load"}, key=key, url=URL)).status_code == 200
    response = await v1_post({"model": "demo-embed", "input": "x" * 20_000}, key=key, url=URL)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == {
        "message": "input[0] is 20000 bytes; this model's context of 512 tokens cannot hold more than 6656 "
        "bytes of one input. Shorten it.",
        "type": "invalid_request_error",
        "code": "context_length_exceeded",
    }

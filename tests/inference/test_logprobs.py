"""`logprobs` / `top_logprobs`: a local version reports its own scores for each token it
picks, on either kind of batching; a remote version is asked for them and its entries are
passed on, read strictly; what cannot be served is a clear 400."""

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from channels.db import database_sync_to_async

from accounts.models import User
from inference.engines.base import ChatMessage, GenerationParams, TokenLogprob
from inference.engines.local import LocalTransformersEngine
from inference.models import ModelVersion
from tests.fake_openai import FakeUpstream
from tests.inference.engines import demo_engine
from tests.inference.fast_path import api_key_mint, remote_model_register, sse_events, v1_post

PROMPT = [ChatMessage(role="user", content="Tell me something")]


@pytest.fixture(scope="module", params=["continuous", "static"])
def engine(request: pytest.FixtureRequest, demo_directory: Path) -> Iterator[LocalTransformersEngine]:
    with demo_engine(demo_directory, batching=request.param) as engine:
        yield engine


class _Heard:
    """An engine's reader: the texts, the entries, and whether entries came with every call."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.entries: list[TokenLogprob] = []
        self.calls_with_entries = 0
        self.calls_without = 0

    def __call__(self, texts: list[str], logprobs: list[TokenLogprob] | None = None, /) -> None:
        self.texts.extend(texts)
        if logprobs is None:
            self.calls_without += 1
        else:
            self.calls_with_entries += 1
            self.entries.extend(logprobs)


def _generate(engine: LocalTransformersEngine, **params: Any) -> tuple[_Heard, Any]:
    heard = _Heard()
    result = engine.generate_stream(
        messages=PROMPT,
        params=GenerationParams(**{"max_tokens": 24, "temperature": 0.0, **params}),
        on_token=heard,
        should_stop=lambda: False,
    )
    return heard, result


def test_each_token_of_the_answer_has_its_entry(engine: LocalTransformersEngine) -> None:
    heard, result = _generate(engine, logprobs=3)
    text = "".join(heard.texts)
    assert heard.calls_without == 0
    assert heard.calls_with_entries >= 1
    # One entry per token of the answer (the end of text, if it came, has none), whose bytes
    # spell the text exactly.
    ended_by_eos = result.finish_reason == "stop"
    assert len(heard.entries) == result.completion_tokens - (1 if ended_by_eos else 0)
    assert b"".join(bytes(entry["bytes"]) for entry in heard.entries) == text.encode()
    for entry in heard.entries:
        alternatives = entry["top_logprobs"]
        assert len(alternatives) == 3
        assert [top["logprob"] for top in alternatives] == sorted(
            (top["logprob"] for top in alternatives), reverse=True
        )
        assert all(top["logprob"] <= 0 for top in alternatives)
        # Greedy: the token picked is the likeliest, and its figure is the first alternative's.
        assert entry["token"] == alternatives[0]["token"]
        assert entry["logprob"] == pytest.approx(alternatives[0]["logprob"])


def test_the_figures_are_the_models_own_distribution(engine: LocalTransformersEngine) -> None:
    """The first token's figures are the log-softmax of the model's logits for the prompt,
    less the tokens its generation config suppresses, whatever the sampling settings
    (temperature shapes the pick, not the figures)."""
    import torch

    prompt_ids = engine.encode_prompt(PROMPT)
    suppressed = engine.model.generation_config.suppress_tokens
    assert suppressed  # the demo model never writes unreadable bytes
    with torch.inference_mode():
        logits = engine.model(input_ids=torch.tensor([prompt_ids], device=engine.device)).logits[0, -1]
        logits[suppressed] = float("-inf")
        expected = logits.float().log_softmax(dim=-1).topk(5)
    expected_tops = [
        (engine.tokenizer.decode([token_id]), value)
        for token_id, value in zip(expected.indices.tolist(), expected.values.tolist(), strict=True)
    ]
    for temperature in (0.0, 1.5):
        heard, _ = _generate(engine, logprobs=5, temperature=temperature, max_tokens=1)
        first = heard.entries[0]
        assert [top["token"] for top in first["top_logprobs"]] == [token for token, _ in expected_tops]
        for top, (_, value) in zip(first["top_logprobs"], expected_tops, strict=True):
            assert top["logprob"] == pytest.approx(value, abs=1e-4)
        assert math.isfinite(first["logprob"])


def test_zero_alternatives_and_requests_that_did_not_ask(engine: LocalTransformersEngine) -> None:
    heard, _ = _generate(engine, logprobs=0, max_tokens=4)
    assert heard.entries
    assert all(entry["top_logprobs"] == [] for entry in heard.entries)
    plain, _ = _generate(engine, max_tokens=4)
    assert plain.calls_with_entries == 0
    assert plain.entries == []


def test_stop_sequences_keep_entries_for_the_tokens_the_answer_holds(engine: LocalTransformersEngine) -> None:
    free, _ = _generate(engine, logprobs=0, max_tokens=24)
    text = "".join(free.texts)
    assert len(text) >= 6
    stop = text[3:5]
    heard, result = _generate(engine, logprobs=0, max_tokens=24, stop=(stop,))
    assert result.finish_reason == "stop"
    assert "".join(heard.texts) == text[: text.index(stop)]
    # The tokens that spelled the stop string were generated (and charged), and are listed.
    assert len(heard.entries) == result.completion_tokens


# --- through the API -----------------------------------------------------------------------------


def _body(**overrides: Any) -> dict[str, Any]:
    return {
        "model": "demo-tiny",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 12,
        "temperature": 0,
        **overrides,
    }


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("inference_backend")
async def test_a_local_version_answers_with_logprobs_whole_and_streamed(
    bob: User, demo_version: ModelVersion
) -> None:
    key = await database_sync_to_async(api_key_mint)(bob)
    whole = await v1_post(_body(logprobs=True, top_logprobs=2), key=key)
    assert whole.status_code == 200, whole.text
    choice = whole.json()["choices"][0]
    content = choice["logprobs"]["content"]
    assert content
    assert all(len(entry["top_logprobs"]) == 2 for entry in content)
    assert b"".join(bytes(entry["bytes"]) for entry in content) == choice["message"]["content"].encode()

    streamed = await v1_post(_body(logprobs=True, top_logprobs=2, stream=True), key=key)
    chunks = [event for event in sse_events(streamed) if event != "[DONE]"]
    entries = [
        entry for chunk in chunks for entry in (chunk["choices"][0]["logprobs"] or {}).get("content", [])
    ]
    text = "".join(chunk["choices"][0]["delta"].get("content") or "" for chunk in chunks)
    # Greedy, so the stream writes the same answer with the same figures.
    assert text == choice["message"]["content"]
    assert [entry["token"] for entry in entries] == [entry["token"] for entry in content]
    assert [entry["logprob"] for entry in entries] == pytest.approx([entry["logprob"] for entry in content])

    plain = await v1_post(_body(), key=key)
    assert plain.json()["choices"][0]["logprobs"] is None


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("inference_backend")
@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"logprobs": "yes"}, "logprobs: logprobs must be a boolean."),
        (
            {"logprobs": True, "top_logprobs": 21},
            "top_logprobs: top_logprobs must be an integer from 0 to 20.",
        ),
        (
            {"logprobs": True, "top_logprobs": -1},
            "top_logprobs: top_logprobs must be an integer from 0 to 20.",
        ),
        ({"top_logprobs": 2}, "top_logprobs: top_logprobs requires logprobs to be true."),
        (
            {"logprobs": True, "tools": [{"type": "function", "function": {"name": "f"}}]},
            "Model 'demo-tiny' cannot return logprobs here: its version v1 reads tool calls out of its "
            "text; ask for logprobs without tools.",
        ),
    ],
)
async def test_what_cannot_be_served_is_a_clear_400(
    bob: User, demo_version: ModelVersion, fields: dict[str, Any], message: str
) -> None:
    key = await database_sync_to_async(api_key_mint)(bob)
    refused = await v1_post(_body(**fields), key=key)
    assert refused.status_code == 400
    assert refused.json()["error"]["message"] == message


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("inference_backend")
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_a_remote_version_is_asked_and_its_entries_passed_on(
    alice: User, bob: User, upstream: FakeUpstream, stream: bool
) -> None:
    await database_sync_to_async(remote_model_register)(alice, upstream)
    key = await database_sync_to_async(api_key_mint)(bob)
    body = {**_body(model="remote-model", logprobs=True, top_logprobs=2), "stream": stream}
    answer = await v1_post(body, key=key)
    assert answer.status_code == 200, answer.text
    sent = upstream.requests[-1]["body"]
    assert sent["logprobs"] is True
    assert sent["top_logprobs"] == 2
    if stream:
        chunks = [event for event in sse_events(answer) if event != "[DONE]" and event["choices"]]
        entries = [e for chunk in chunks for e in (chunk["choices"][0]["logprobs"] or {}).get("content", [])]
    else:
        entries = answer.json()["choices"][0]["logprobs"]["content"]
    assert [entry["token"] for entry in entries] == upstream.words
    assert all(entry["logprob"] == -0.5 for entry in entries)
    assert [top["token"] for top in entries[0]["top_logprobs"]] == ["alt0", "alt1"]

    await v1_post({**body, "logprobs": None, "top_logprobs": None}, key=key)
    assert "logprobs" not in upstream.requests[-1]["body"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("inference_backend")
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize(
    "malformed",
    [
        {"content": "nope"},
        {"content": [{"token": 3, "logprob": -1}]},
        {"content": [{"token": "a", "logprob": "x"}]},
    ],
)
async def test_malformed_upstream_logprobs_are_a_502(
    alice: User, bob: User, upstream: FakeUpstream, stream: bool, malformed: Any
) -> None:
    await database_sync_to_async(remote_model_register)(alice, upstream)
    key = await database_sync_to_async(api_key_mint)(bob)
    upstream.logprobs = malformed
    answer = await v1_post({**_body(model="remote-model", logprobs=True), "stream": stream}, key=key)
    # Nothing was sent before the malformed piece: a stream, too, has not begun, and the
    # answer is the error alone.
    assert answer.status_code == 502
    assert answer.json()["error"]["code"] == "bad_upstream"


def test_the_end_of_text_token_has_no_entry(engine: LocalTransformersEngine) -> None:
    from inference.engines.batching import BatchRequest, _drain
    from inference.engines.detokenize import IncrementalDetokenizer
    from inference.engines.streaming import RowStreamer

    request = BatchRequest(prompt_ids=[1], params=GenerationParams(max_tokens=5, logprobs=0))
    row = RowStreamer(
        request=request,
        detokenizer=IncrementalDetokenizer(engine.tokenizer),
        eos_token_id=engine.eos_token_id,
    )
    letter = engine.tokenizer.convert_tokens_to_ids("a")
    row.put_token(letter, {"token": "a", "logprob": -1.0, "bytes": [97], "top_logprobs": []})
    assert engine.eos_token_id is not None
    row.put_token(engine.eos_token_id, {"token": "", "logprob": -2.0, "bytes": [], "top_logprobs": []})
    drained = _drain(request.texts)
    assert drained.texts == ["a", ""]  # the end of text has a text (empty)...
    assert [entry["token"] for entry in drained.logprobs] == ["a"]  # ...and no entry

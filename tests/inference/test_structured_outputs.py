"""Structured outputs on a local model: the randomly initialised demo model, decoded under a
grammar, writes documents that validate against the schema asked for."""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from inference.engines.base import ChatMessage, FinishReason, GenerationParams, GenerationResult
from inference.engines.constraints import OutputGrammars, ResponseFormatUnsupported, constraints_apply
from inference.engines.local import LocalTransformersEngine
from tests.inference.engines import demo_engine
from tests.inference.threads import concurrently


def _closed(properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
        **extra,
    }


BOUNDED = {"type": "string", "minLength": 1, "maxLength": 12}
SCHEMAS = {
    "nested-object": _closed(
        {"name": BOUNDED, "address": _closed({"city": BOUNDED, "zip": {"type": "string", "pattern": "^[0-9]{5}$"}})}
    ),
    "array-of-enums": _closed(
        {"tags": {"type": "array", "items": {"enum": ["red", "green", "blue"]}, "minItems": 1, "maxItems": 4}}
    ),
    "numbers-and-booleans": _closed(
        {"age": {"type": "integer", "minimum": 0, "maximum": 130}, "ok": {"type": "boolean"}, "kind": {"const": "x"}}
    ),
    "defs-and-any-of": _closed(
        {"pet": {"$ref": "#/$defs/pet"}, "note": {"anyOf": [BOUNDED, {"type": "null"}]}},
        **{"$defs": {"pet": _closed({"species": {"enum": ["cat", "dog"]}, "legs": {"type": "integer", "maximum": 8}})}},
    ),
}  # fmt: skip


def _schema_format(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "answer", "strict": True, "schema": schema}}


@pytest.fixture(scope="module", params=["continuous", "static"])
def engine(request: pytest.FixtureRequest, demo_directory: Path) -> Iterator[LocalTransformersEngine]:
    with demo_engine(
        demo_directory, batching=request.param, batch_gather_seconds=0.3, max_concurrent_batches=1
    ) as engine:
        yield engine


def _generate(
    engine: LocalTransformersEngine, pieces: list[str], *, content: str = "hello", **params: Any
) -> GenerationResult:
    return engine.generate_stream(
        messages=[ChatMessage(role="user", content=content)],
        params=GenerationParams(**params),
        on_token=pieces.extend,
        should_stop=lambda: False,
    )


@pytest.mark.parametrize("schema", SCHEMAS.values(), ids=SCHEMAS.keys())
def test_every_answer_that_stops_validates_against_its_schema(
    engine: LocalTransformersEngine, schema: dict[str, Any]
) -> None:
    for seed_prompt, temperature in [("hello", 0.0), ("a pet, please", 1.0), ("anything", 1.5)]:
        pieces: list[str] = []
        result = _generate(
            engine,
            pieces,
            content=seed_prompt,
            max_tokens=300,
            temperature=temperature,
            response_format=_schema_format(schema),
        )
        assert result.finish_reason == FinishReason.STOP, "".join(pieces)
        jsonschema.validate(json.loads("".join(pieces)), schema)


def test_json_object_is_a_json_object_or_cut_short(engine: LocalTransformersEngine) -> None:
    pieces: list[str] = []
    result = _generate(
        engine, pieces, max_tokens=60, temperature=1.0, response_format={"type": "json_object"}
    )
    text = "".join(pieces)
    assert text.lstrip().startswith("{")
    if result.finish_reason == FinishReason.STOP:
        assert isinstance(json.loads(text), dict)


def test_an_unbounded_string_cut_short_is_still_a_prefix_of_a_document(
    engine: LocalTransformersEngine,
) -> None:
    # A free string can run on past max_tokens, as OpenAI's models may: what was written is
    # still how such a document begins.
    schema = _closed({"essay": {"type": "string"}})
    pieces: list[str] = []
    result = _generate(engine, pieces, max_tokens=12, temperature=0.0, response_format=_schema_format(schema))
    text = "".join(pieces)
    assert result.finish_reason == FinishReason.LENGTH
    assert text.startswith('{"essay":"'), text
    assert result.completion_tokens == 12


def test_constrained_and_free_rows_share_a_batch_and_keep_their_own_text(
    engine: LocalTransformersEngine,
) -> None:
    alone: list[str] = []
    _generate(engine, alone, max_tokens=16, temperature=0.0)
    schema = SCHEMAS["array-of-enums"]
    outputs: list[list[str]] = [[] for _ in range(4)]
    results = concurrently(
        [
            lambda: _generate(engine, outputs[0], max_tokens=16, temperature=0.0),
            lambda: _generate(engine, outputs[1], max_tokens=300, response_format=_schema_format(schema)),
            lambda: _generate(engine, outputs[2], max_tokens=16, temperature=0.0),
            lambda: _generate(engine, outputs[3], max_tokens=300, response_format=_schema_format(schema)),
        ]
    )
    assert all(isinstance(result, GenerationResult) for result in results), results
    assert "".join(outputs[0]) == "".join(outputs[2]) == "".join(alone)  # the free rows: untouched
    for constrained in (outputs[1], outputs[3]):
        jsonschema.validate(json.loads("".join(constrained)), schema)
    if engine.batching == "static":
        assert 4 in engine.scheduler.batch_sizes


def test_a_format_without_a_grammar_is_refused_before_any_token(engine: LocalTransformersEngine) -> None:
    pieces: list[str] = []
    with pytest.raises(ResponseFormatUnsupported, match="has no grammar"):
        _generate(engine, pieces, max_tokens=5, response_format={"type": "xml"})
    assert pieces == []


def test_a_complete_document_leaves_its_row_unmasked(engine: LocalTransformersEngine) -> None:
    # In a static batch an ended row is padded while the others run: its mask must not fail.
    import torch

    grammars = OutputGrammars(tokenizer=engine.tokenizer, vocab_size=engine.model.config.vocab_size)
    constraint = grammars.constraint_for(_schema_format(_closed({"ok": {"type": "boolean"}})))
    for token_id in [*engine.tokenizer.encode('{"ok":true}'), engine.eos_token_id]:
        assert constraint.accept(token_id), token_id
    scores = torch.zeros(2, engine.model.config.vocab_size)
    assert constraints_apply(scores, [None, constraint])
    assert not torch.isinf(scores).any()
    assert not constraint.accept(engine.eos_token_id)  # complete: nothing more is taken


def test_a_job_carries_a_format_only_when_there_is_one() -> None:
    # Workers of the previous release build GenerationParams from the job and know no format.
    plain = GenerationParams(max_tokens=5, stop=("x",))
    assert "response_format" not in plain.to_payload()
    assert GenerationParams(**{**plain.to_payload(), "stop": ("x",)}) == plain
    shaped = GenerationParams(max_tokens=5, response_format={"type": "json_object"})
    assert GenerationParams(**shaped.to_payload()) == shaped

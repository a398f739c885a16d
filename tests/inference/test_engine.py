"""The local engine: streaming, limits, cancellation, detokenisation."""

from pathlib import Path

import pytest

from inference.demo_model import demo_model_build
from inference.engines.base import ChatMessage, FinishReason, GenerationParams
from inference.engines.detokenize import IncrementalDetokenizer
from inference.engines.local import LocalTransformersEngine, PromptTooLong

HELLO = [ChatMessage(role="user", content="hello")]


def test_cpu_machine_runs_float32_on_cpu(engine: LocalTransformersEngine) -> None:
    import torch

    if torch.cuda.is_available():
        assert engine.device == "cuda"
        assert engine.dtype == torch.bfloat16
    else:
        assert engine.device == "cpu"
        assert engine.dtype == torch.float32


def test_one_callback_per_token_and_text_matches_the_tokenizer(engine: LocalTransformersEngine) -> None:
    pieces: list[str] = []
    result = engine.generate_stream(
        messages=HELLO,
        params=GenerationParams(max_tokens=40, temperature=0.0),
        on_token=pieces.extend,
        should_stop=lambda: False,
    )
    assert result.completion_tokens == len(pieces)
    assert result.prompt_tokens == len(engine.encode_prompt(HELLO))
    # Greedy: the demo model never writes end-of-text for this prompt, so it runs to max_tokens.
    assert result.finish_reason is FinishReason.LENGTH
    assert result.completion_tokens == 40


def test_greedy_generation_is_reproducible(engine: LocalTransformersEngine) -> None:
    runs = []
    for _ in range(2):
        pieces: list[str] = []
        engine.generate_stream(
            messages=HELLO,
            params=GenerationParams(max_tokens=16, temperature=0.0),
            on_token=pieces.extend,
            should_stop=lambda: False,
        )
        runs.append(pieces)
    assert runs[0] == runs[1]


def test_cancellation_stops_between_tokens(engine: LocalTransformersEngine) -> None:
    pieces: list[str] = []
    result = engine.generate_stream(
        messages=HELLO,
        params=GenerationParams(max_tokens=200, temperature=0.0),
        on_token=pieces.extend,
        should_stop=lambda: len(pieces) >= 5,
    )
    assert result.finish_reason is FinishReason.CANCELLED
    assert result.completion_tokens == len(pieces)
    # Checked before every delivery: at most what was already queued for the reader follows.
    assert 5 <= len(pieces) < 40


def test_prompt_that_does_not_fit_the_context_is_refused(engine: LocalTransformersEngine) -> None:
    with pytest.raises(PromptTooLong, match="exceeds the model's context of 512 tokens"):
        engine.generate_stream(
            messages=[ChatMessage(role="user", content="x" * 500)],
            params=GenerationParams(max_tokens=64),
            on_token=lambda _: None,
            should_stop=lambda: False,
        )


def test_detokenizer_never_splits_a_multibyte_character(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    demo_model_build(directory=tmp_path / "m")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "m", local_files_only=True)
    text = "naïve café 😀 ok"
    ids = tokenizer.encode(text)
    detokenizer = IncrementalDetokenizer(tokenizer)
    pieces = [detokenizer.add(token_id, final=index == len(ids) - 1) for index, token_id in enumerate(ids)]
    assert "".join(pieces) == text
    assert all("\ufffd" not in piece for piece in pieces)
    assert pieces.count("") >= 5  # the 4-byte emoji and the 2-byte letters were held back


def test_detokenizer_flushes_an_incomplete_character_on_the_last_token(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    demo_model_build(directory=tmp_path / "m")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "m", local_files_only=True)
    first_byte_of_emoji = tokenizer.encode("😀")[0]
    detokenizer = IncrementalDetokenizer(tokenizer)
    assert detokenizer.add(first_byte_of_emoji) == ""
    assert detokenizer.add(tokenizer.encode("a")[0], final=True) == "\ufffda"


def test_the_demo_model_streams_readable_ascii(engine: LocalTransformersEngine) -> None:
    pieces: list[str] = []
    engine.generate_stream(
        messages=HELLO,
        params=GenerationParams(max_tokens=64, temperature=1.0),
        on_token=pieces.extend,
        should_stop=lambda: False,
    )
    text = "".join(pieces)
    assert text, "sampling produced no text"
    assert all(char == "\n" or (char.isascii() and char.isprintable()) for char in text), repr(text)


def _sampled_text(engine: LocalTransformersEngine, **params: object) -> tuple[list[str], object]:
    """Seeded sampling: two runs draw the same tokens until one of them stops."""
    import torch

    torch.manual_seed(3)
    pieces: list[str] = []
    result = engine.generate_stream(
        messages=[ChatMessage(role="user", content="stop test")],
        params=GenerationParams(temperature=1.0, **params),  # type: ignore[arg-type]
        on_token=pieces.extend,
        should_stop=lambda: False,
    )
    return pieces, result


def test_a_stop_sequence_ends_generation_and_is_not_sent(engine: LocalTransformersEngine) -> None:
    free, _ = _sampled_text(engine, max_tokens=60)
    text = "".join(free)
    assert len(text) >= 10, f"the seeded sample is too short to cut: {text!r}"
    stop = text[5:8]
    pieces, result = _sampled_text(engine, max_tokens=60, stop=(stop,))
    assert "".join(pieces) == text[: text.index(stop)]
    assert result.finish_reason is FinishReason.STOP  # type: ignore[attr-defined]
    assert result.completion_tokens == len(pieces) < len(free)  # type: ignore[attr-defined]


def test_the_wall_clock_limit_cuts_a_long_generation(engine: LocalTransformersEngine) -> None:
    pieces, result = _sampled_text(engine, max_tokens=460, max_seconds=0.0001)
    assert result.finish_reason is FinishReason.LENGTH  # type: ignore[attr-defined]
    assert len(pieces) < 460


def test_the_gpu_precision_and_batching_run_on_the_cpu_with_the_same_code(tmp_path: Path) -> None:
    """What `make bench-gpu` serves on CUDA (a Qwen2-shaped model in bf16, continuous batches),
    here on the CPU: every weight in bf16 on the engine's device, rows of one batch each running
    to their length with the same greedy answer, and the roofline's bytes counting a tied weight once."""
    import threading

    import torch

    from bench.gpu import roofline_model_build, weight_bytes
    from inference.manifest import manifest_compute

    directory = tmp_path / "qwen2-shaped"
    shape = {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
    }
    roofline_model_build(directory=directory, shape=shape)
    engine = LocalTransformersEngine(
        directory=directory,
        manifest=manifest_compute(directory=directory),
        context_length=256,
        device="cpu",
        dtype="bfloat16",
    )
    try:
        assert engine.batching == "continuous"
        assert {(parameter.dtype, parameter.device.type) for parameter in engine.model.parameters()} == {
            (torch.bfloat16, "cpu")
        }
        answers: list[list[str]] = [[] for _ in range(4)]
        results: list[object] = [None] * 4

        def generate(index: int) -> None:
            results[index] = engine.generate_stream(
                messages=HELLO,
                params=GenerationParams(max_tokens=24, temperature=0.0),
                on_token=answers[index].extend,
                should_stop=lambda: False,
            )

        threads = [threading.Thread(target=generate, args=(index,)) for index in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        # End-of-text is suppressed in this model, so every row runs to its max_tokens.
        assert [(result.finish_reason, result.completion_tokens) for result in results] == [  # type: ignore[attr-defined]
            (FinishReason.LENGTH, 24)
        ] * 4
        assert answers[0] == answers[1] == answers[2] == answers[3]
        assert len(answers[0]) == 24
        unique = sum(parameter.numel() * parameter.element_size() for parameter in engine.model.parameters())
        assert engine.model.config.tie_word_embeddings
        assert weight_bytes(engine.model) == unique
    finally:
        engine.close()

"""Continuous batching: rows that join, leave and share a cache score tokens as if alone."""

import threading
import time
from typing import Any

from inference.engines.base import ChatMessage, FinishReason, GenerationParams, GenerationResult
from inference.engines.batching import BatchRequest
from inference.engines.continuous import ContinuousBatch, continuous_batching_supported
from inference.engines.local import LocalTransformersEngine
from inference.engines.logprobs import TokenLogprobs


class RecordingBatch(ContinuousBatch):
    """Keeps every row's logits, step by step, keyed by its request."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.logits: dict[int, list[Any]] = {}

    def _pick(self, logits: Any, rows: list[Any]) -> Any:
        for row, row_logits in zip(rows, logits, strict=True):
            self.logits.setdefault(id(row.request), []).append(row_logits.clone())
        return super()._pick(logits, rows)


def _batch(engine: LocalTransformersEngine) -> RecordingBatch:
    return RecordingBatch(
        model=engine.model,
        tokenizer=engine.tokenizer,
        device=engine.device,
        pad_token_id=engine.pad_token_id,
        logprobs=TokenLogprobs(engine.tokenizer),
    )


def _request(engine: LocalTransformersEngine, content: str, max_tokens: int) -> BatchRequest:
    prompt = engine.encode_prompt([ChatMessage(role="user", content=content)])
    # Greedy, and a queue that never fills: this test drives the batch by hand, with no reader.
    request = BatchRequest(prompt_ids=prompt, params=GenerationParams(max_tokens=max_tokens, temperature=0.0))
    request.texts.maxsize = 0
    return request


def _run_until_done(batch: ContinuousBatch, requests: list[BatchRequest]) -> None:
    import torch

    with torch.inference_mode():
        while not all(request.finished.is_set() for request in requests):
            batch.step()
            batch.retire()


def test_the_demo_model_is_served_continuously(engine: LocalTransformersEngine) -> None:
    assert continuous_batching_supported(engine.model)
    assert engine.batching == "continuous"


def test_a_row_that_joins_mid_flight_and_outlives_the_others_scores_as_if_alone(
    engine: LocalTransformersEngine,
) -> None:
    import torch

    alone_batch = _batch(engine)
    alone = _request(engine, "the late one, with a longer prompt", max_tokens=12)
    with torch.inference_mode():
        alone_batch.admit([alone])
    _run_until_done(alone_batch, [alone])

    shared = _batch(engine)
    early = _request(engine, "hi", max_tokens=4)
    late = _request(engine, "the late one, with a longer prompt", max_tokens=12)
    with torch.inference_mode():
        shared.admit([early])
        shared.step()
        shared.admit([late])  # joins a running batch whose cache is shorter than its prompt
    _run_until_done(shared, [early, late])  # `early` retires first; `late` runs on alone

    expected, actual = alone_batch.logits[id(alone)], shared.logits[id(late)]
    assert len(actual) == len(expected) == 12
    for step, (want, got) in enumerate(zip(expected, actual, strict=True)):
        assert torch.allclose(want, got, atol=1e-4), f"step {step} differs"
    assert early.result == GenerationResult(early.result.prompt_tokens, 4, FinishReason.LENGTH)  # type: ignore[union-attr]
    assert late.result.completion_tokens == 12  # type: ignore[union-attr]


def test_the_first_token_matches_generate(engine: LocalTransformersEngine) -> None:
    """The batch's prefill scores the prompt exactly as transformers' own generate() does."""
    import torch

    batch = _batch(engine)
    request = _request(engine, "compare with generate", max_tokens=3)
    with torch.inference_mode():
        batch.admit([request])
    _run_until_done(batch, [request])
    ids, mask = engine.batch_inputs([request.prompt_ids])
    with torch.inference_mode():
        reference = engine.model.generate(
            ids,
            attention_mask=mask,
            max_new_tokens=3,
            do_sample=False,
            output_logits=True,
            return_dict_in_generate=True,
            pad_token_id=engine.pad_token_id,
            suppress_tokens=None,
        )
    for step in range(3):
        assert torch.allclose(reference.logits[step][0], batch.logits[id(request)][step], atol=1e-4)


def test_requests_arriving_apart_join_the_running_batch(engine: LocalTransformersEngine) -> None:
    """Latecomers stream while the first request is still streaming: nobody waits for it to end."""
    first_token_at: dict[int, float] = {}
    finished_at: dict[int, float] = {}
    counts: dict[int, int] = {}
    results: dict[int, GenerationResult] = {}
    first_streaming = threading.Event()

    def generate(index: int) -> None:
        if index:
            first_streaming.wait(timeout=30)

        def on_token(texts: list[str]) -> None:
            first_token_at.setdefault(index, time.monotonic())
            counts[index] = counts.get(index, 0) + len(texts)
            first_streaming.set()

        results[index] = engine.generate_stream(
            messages=[ChatMessage(role="user", content=f"stream {index}")],
            # Greedy: the demo model repeats one token and never ends early.
            params=GenerationParams(max_tokens=200, temperature=0.0),
            on_token=on_token,
            should_stop=lambda: False,
        )
        finished_at[index] = time.monotonic()

    threads = [threading.Thread(target=generate, args=(index,)) for index in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(results) == list(range(6))
    for index, result in results.items():
        assert result.completion_tokens == counts[index] == 200
    assert all(first_token_at[index] < finished_at[0] for index in range(1, 6))

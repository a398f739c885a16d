"""Engine-level batching, without the stack: which way of running 8 streams at once wins,
and what constraining a structured output costs a batch's decode.

Three ways, each timed for 1 stream and for 8 concurrent streams of the same length:
- separate `generate()` calls on 8 threads (no batching: what the engine did before);
- this engine's static batches (one left-padded `generate()` for all rows);
- this engine's continuous batches (its own decoding loop; rows join between steps);
- transformers' continuous batching (`init_continuous_batching`, streaming requests).
"""

import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gatehouse.heap import model_libraries_freeze
from inference.engines.base import ChatMessage, GenerationParams

PROMPT = [ChatMessage(role="user", content="Benchmark, please stream.")]


def concurrent_rate(run_one: Callable[[], int], streams: int) -> float:
    """Tokens/s of `streams` calls of `run_one` (each returning its token count) at once."""
    counts: list[int] = []
    threads = [threading.Thread(target=lambda: counts.append(run_one())) for _ in range(streams)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - started)


def stream_runner(engine: Any, *, max_tokens: int, arriving_with: int = 0) -> Callable[[], int]:
    """One greedy stream of PROMPT through `engine` (a LocalTransformersEngine), its tokens
    counted; `arriving_with`: how many others it tells the engine are started with it."""

    def run_one() -> int:
        return int(
            engine.generate_stream(
                messages=PROMPT,
                params=GenerationParams(max_tokens=max_tokens, temperature=0.0),
                on_token=lambda *_: None,
                should_stop=lambda: False,
                arriving_with=arriving_with,
            ).completion_tokens
        )

    return run_one


def _engine_build(directory: Path, *, device: str, **batching: object) -> Any:
    from inference.demo_model import DEMO_CONTEXT_LENGTH
    from inference.engines.local import LocalTransformersEngine
    from inference.manifest import manifest_compute

    return LocalTransformersEngine(
        directory=directory,
        manifest=manifest_compute(directory=directory),
        context_length=DEMO_CONTEXT_LENGTH,
        device=device,
        **batching,  # type: ignore[arg-type]
    )


@contextmanager
def continuous_engine_eight(
    directory: Path, *, max_tokens: int, device: str
) -> Iterator[Callable[[], float]]:
    """Tokens/s of 8 streams at once through the engine's own continuous batches, in this
    process: what P5 sets the stack's 8 streams beside, round by round, so that drift on a
    shared machine hits both alike. Each stream tells the engine that the 7 others start with
    it, as the stack's chats do (`inference.chat.arrivals`): the engine at its best for 8."""
    # As a serving process does before its first model: collections skip the libraries' heap.
    model_libraries_freeze()
    engine = _engine_build(directory, device=device, batching="continuous")
    run_one = stream_runner(engine, max_tokens=max_tokens)
    run_one()  # first-call set-up is not what is measured
    run_eight = stream_runner(engine, max_tokens=max_tokens, arriving_with=7)
    try:
        yield lambda: concurrent_rate(run_eight, 8)
    finally:
        engine.close()


def _engine_rates(
    directory: Path, *, max_tokens: int, rounds: int, device: str, **batching: object
) -> dict[str, float]:
    engine = _engine_build(directory, device=device, **batching)
    run_one = stream_runner(engine, max_tokens=max_tokens)
    run_one()
    one = statistics.median(concurrent_rate(run_one, 1) for _ in range(rounds))
    eight = statistics.median(concurrent_rate(run_one, 8) for _ in range(rounds))
    engine.close()
    return {"one": round(one), "eight": round(eight), "ratio": round(eight / one, 2)}


def _continuous_batching_rates(directory: Path, *, max_tokens: int, rounds: int) -> dict[str, float]:
    from transformers import AutoModelForCausalLM, AutoTokenizer, ContinuousBatchingConfig, GenerationConfig

    tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(directory, local_files_only=True).eval()
    prompt = tokenizer.apply_chat_template(
        [{"role": message.role, "content": message.content} for message in PROMPT],
        add_generation_prompt=True,
        return_dict=True,
    )["input_ids"]
    config = GenerationConfig(
        max_new_tokens=max_tokens,
        do_sample=False,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        suppress_tokens=model.generation_config.suppress_tokens,
    )
    # A cache sized for these 8 streams: left to itself, the manager sizes it to most of the
    # host's free memory, and zeroing that took longer than the rounds on a CPU.
    streams_cache = ContinuousBatchingConfig(
        num_blocks=16, max_batch_tokens=max(512, 8 * len(prompt)), max_requests_per_batch=8
    )
    manager = model.init_continuous_batching(
        generation_config=config, continuous_batching_config=streams_cache
    )
    manager.start()

    def rate(streams: int) -> float:
        ids = [
            manager.add_request(list(prompt), max_new_tokens=max_tokens, streaming=True)
            for _ in range(streams)
        ]
        started, finished, tokens = time.perf_counter(), 0, 0
        while finished < len(ids):
            result = manager.get_result(timeout=30)
            if result is None:
                raise RuntimeError("continuous batching stopped answering")
            if result.is_finished():
                finished += 1
                tokens += len(result.generated_tokens)
        return tokens / (time.perf_counter() - started)

    try:
        rate(1)
        one = statistics.median(rate(1) for _ in range(rounds))
        eight = statistics.median(rate(8) for _ in range(rounds))
    finally:
        manager.stop(block=True, timeout=10)
    return {"one": round(one), "eight": round(eight), "ratio": round(eight / one, 2)}


def engine_batching_compare(
    directory: Path, *, max_tokens: int, rounds: int, device: str = "cpu"
) -> dict[str, object]:
    """Tokens/s for 1 and 8 streams, per way of batching; a way that fails says why."""
    ways: dict[str, Callable[[], dict[str, float]]] = {
        "threads_without_batching": lambda: _engine_rates(
            directory,
            max_tokens=max_tokens,
            rounds=rounds,
            device=device,
            batching="static",
            max_batch_size=1,
            max_concurrent_batches=8,
        ),
        "static_padded_generate_batches": lambda: _engine_rates(
            directory, max_tokens=max_tokens, rounds=rounds, device=device, batching="static"
        ),
        "continuous_batches_own_loop": lambda: _engine_rates(
            directory, max_tokens=max_tokens, rounds=rounds, device=device, batching="continuous"
        ),
    }
    if device == "cpu":  # measured on the CPU only: it is a comparison of ways, not of devices
        ways["transformers_continuous_batching"] = lambda: _continuous_batching_rates(
            directory, max_tokens=max_tokens, rounds=rounds
        )
    results: dict[str, object] = {}
    for name, measure in ways.items():
        try:
            results[name] = measure()
        except Exception as exc:  # noqa: BLE001 - a failing way is reported, not fatal
            results[name] = f"failed: {exc}"
    return results


# A document as long as the stream: one string property the length of the answer, so a
# constrained row writes about as many tokens as a free one.
def _long_document(max_tokens: int) -> dict[str, object]:
    schema = {
        "type": "object",
        "properties": {"text": {"type": "string", "minLength": max_tokens, "maxLength": max_tokens}},
        "required": ["text"],
        "additionalProperties": False,
    }
    return {"type": "json_schema", "json_schema": {"name": "long", "strict": True, "schema": schema}}


def structured_output_cost(directory: Path, *, max_tokens: int, rounds: int, device: str) -> dict[str, float]:
    """8 streams through the engine's continuous batches, free and under a JSON schema's
    grammar, in alternating rounds: tokens/s of each, and what the grammar costs per token."""
    engine = _engine_build(directory, device=device, batching="continuous")
    constrained_format = _long_document(max_tokens)

    def runner(response_format: dict[str, object] | None) -> Callable[[], int]:
        def run_one() -> int:
            return int(
                engine.generate_stream(
                    messages=PROMPT,
                    params=GenerationParams(
                        max_tokens=max_tokens, temperature=0.0, response_format=response_format
                    ),
                    on_token=lambda *_: None,
                    should_stop=lambda: False,
                ).completion_tokens
            )

        return run_one

    free, constrained = runner(None), runner(constrained_format)
    started = time.perf_counter()
    constrained()  # compiles the grammar (kept for the rounds after) and warms the engine
    first_ms = (time.perf_counter() - started) * 1000
    free()
    free_rates, constrained_rates = [], []
    try:
        for _ in range(rounds):
            free_rates.append(concurrent_rate(free, 8))
            constrained_rates.append(concurrent_rate(constrained, 8))
    finally:
        engine.close()
    free_rate, constrained_rate = statistics.median(free_rates), statistics.median(constrained_rates)
    return {
        "free_eight_tokens_per_s": round(free_rate),
        "constrained_eight_tokens_per_s": round(constrained_rate),
        "constrained_vs_free": round(constrained_rate / free_rate, 2),
        # Per token of the batch: how much longer a step takes with every row constrained.
        "cost_per_token_us": round(1e6 * (1 / constrained_rate - 1 / free_rate), 1),
        "first_request_with_compile_ms": round(first_ms, 1),
    }

"""`make bench-gpu`: decode speed on the GPU against the memory-bandwidth roofline.

One decoding step of one stream reads every weight of the model once, so a stream can make
at most `bandwidth / weight bytes` tokens per second: the roofline. The model measured has
the shape of a 0.5B-class chat model (24 layers, hidden size 896, grouped-query attention)
with the demo's byte tokenizer and random weights, built here and loaded in bf16 through the
engine that serves every local model (`LocalTransformersEngine`, continuous batches). The
bandwidth is measured in the same run, by a device-to-device copy.

Beside the roofline: `generate()` alone on the same weights (what the engine is compared with
in P3), and 8 concurrent streams through the engine (its batching; in a batch the weights are
read once per step for all rows, so the aggregate may pass the one-stream roofline).
"""

import statistics
import time
from pathlib import Path
from typing import Any

from bench.engine import PROMPT, concurrent_rate, stream_runner
from bench.report import Goal

# A 0.5B-class decoder's shape (Qwen2-0.5B's, but for the byte vocabulary): ~0.36B weights.
SHAPE = {
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
}
CONTEXT_LENGTH = 1024


def roofline_model_build(*, directory: Path, shape: dict[str, int] | None = None) -> None:
    """Write a random-weight model of `shape` (default SHAPE) with the demo's tokenizer to `directory`.

    Its end-of-text token is suppressed, so every stream runs to its `max_tokens`.
    """
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from inference.demo_model import demo_tokenizer_build

    directory.mkdir(parents=True, exist_ok=True)
    vocab_size = demo_tokenizer_build(directory)
    end_of_text = vocab_size - 1
    config = Qwen2Config(
        vocab_size=vocab_size,
        max_position_embeddings=CONTEXT_LENGTH,
        tie_word_embeddings=True,
        bos_token_id=end_of_text,
        eos_token_id=end_of_text,
        pad_token_id=end_of_text,
        **(shape or SHAPE),
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.generation_config.suppress_tokens = [end_of_text]
    model.save_pretrained(directory, safe_serialization=True)


def copy_bandwidth(*, megabytes: int = 2048, rounds: int = 10) -> float:
    """Bytes per second a device-to-device copy moves (read and write both counted)."""
    import torch

    source = torch.empty(megabytes * 2**20, dtype=torch.uint8, device="cuda")
    target = torch.empty_like(source)
    target.copy_(source)
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(rounds):
        target.copy_(source)
    torch.cuda.synchronize()
    return float(2 * source.numel() * rounds) / (time.perf_counter() - started)


def weight_bytes(model: Any) -> int:
    """Bytes of the weights one step reads; a tied tensor counted once."""
    seen: dict[int, int] = {}
    for tensor in model.state_dict().values():
        seen[tensor.data_ptr()] = tensor.numel() * tensor.element_size()
    return sum(seen.values())


def _generate_rate(engine: Any, *, max_tokens: int) -> float:
    """Tokens/s of `generate()` alone on the engine's model and prompt (one stream, greedy)."""
    import torch

    input_ids = torch.tensor([engine.encode_prompt(PROMPT)], device=engine.device)
    with torch.inference_mode():
        torch.cuda.synchronize()
        started = time.perf_counter()
        output = engine.model.generate(
            input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=max_tokens,
            min_new_tokens=max_tokens,
            do_sample=False,
            pad_token_id=engine.pad_token_id,
        )
        torch.cuda.synchronize()
    return float(output.shape[-1] - input_ids.shape[-1]) / (time.perf_counter() - started)


def measure_roofline(*, workdir: Path, max_tokens: int, rounds: int) -> Goal:
    """Decode tokens/s of one stream on the GPU over the roofline; 8 streams and `generate()` beside."""
    import torch

    from inference.engines.local import LocalTransformersEngine
    from inference.manifest import manifest_compute

    goal = Goal(
        id="GPU",
        measure="decode tokens/s of one stream through the engine (bf16, CUDA) vs the memory-bandwidth "
        "roofline; 8 streams and generate() beside",
        goal="reported (no SPEC figure)",
        anchor="vLLM reaches a large share of the roofline with CUDA graphs",
        reported_only=True,
    )
    directory = workdir / "roofline-model"
    roofline_model_build(directory=directory)
    engine = LocalTransformersEngine(
        directory=directory,
        manifest=manifest_compute(directory=directory),
        context_length=CONTEXT_LENGTH,
        device="cuda",
        dtype="auto",
    )

    run_one = stream_runner(engine, max_tokens=max_tokens)
    try:
        run_one()  # first-call set-up (kernels, allocator) is not what is measured
        _generate_rate(engine, max_tokens=8)
        one = [concurrent_rate(run_one, 1) for _ in range(rounds)]
        eight = [concurrent_rate(run_one, 8) for _ in range(rounds)]
        generate = [_generate_rate(engine, max_tokens=max_tokens) for _ in range(rounds)]
        weights = weight_bytes(engine.model)
        dtype = str(next(engine.model.parameters()).dtype)
    finally:
        engine.close()
    bandwidth = copy_bandwidth()
    roofline = bandwidth / weights
    goal.measured = statistics.median(one) / roofline
    goal.details = {
        "gpu": torch.cuda.get_device_name(0),
        "dtype": dtype,
        "weights_mb": round(weights / 2**20),
        "copy_bandwidth_gb_per_s": round(bandwidth / 1e9),
        "roofline_tokens_per_s_one_stream": round(roofline),
        "engine_one_stream_tokens_per_s": [round(rate) for rate in one],
        "engine_eight_streams_tokens_per_s": [round(rate) for rate in eight],
        "generate_one_stream_tokens_per_s": [round(rate) for rate in generate],
        "engine_vs_generate": round(statistics.median(one) / statistics.median(generate), 2),
        "eight_vs_one": round(statistics.median(eight) / statistics.median(one), 2),
        "max_tokens": max_tokens,
    }
    return goal

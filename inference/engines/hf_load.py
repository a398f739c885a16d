"""Loading a Hugging Face model directory the one safe way, for every local engine.

The weights policy and the manifest are checked before anything is read; no remote code ever
runs; pickle weights load only for versions allowed them; the device and dtype are resolved
once, and CPU threads applied where the model runs on the CPU.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference.engines.device import cpu_threads_apply, device_resolve, dtype_resolve
from inference.manifest import manifest_verify, weights_policy_check


@dataclass(frozen=True)
class LoadedModel:
    model: Any
    tokenizer: Any
    device: str
    dtype: Any


def hf_model_load(
    *,
    directory: Path,
    manifest: dict[str, str],
    auto_class: Any,
    device: str,
    dtype: str,
    allow_pickle_weights: bool,
    cpu_threads: int,
) -> LoadedModel:
    """`directory`'s tokenizer and model (through `auto_class`, `AutoModelForCausalLM` or
    `AutoModel`), on its device, in eval mode."""
    from transformers import AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    weights_policy_check(manifest=manifest, allow_pickle=allow_pickle_weights)
    manifest_verify(directory=directory, expected=manifest)
    resolved_device = device_resolve(preference=device)
    resolved_dtype = dtype_resolve(preference=dtype, device=resolved_device)
    if resolved_device == "cpu":
        cpu_threads_apply(preference=cpu_threads)
    tokenizer = AutoTokenizer.from_pretrained(directory, trust_remote_code=False, local_files_only=True)
    model = auto_class.from_pretrained(
        directory,
        trust_remote_code=False,
        local_files_only=True,
        # None lets transformers fall back to pickle weights, for versions allowed them.
        use_safetensors=None if allow_pickle_weights else True,
        dtype=resolved_dtype,
    )
    return LoadedModel(
        model=model.to(resolved_device).eval(),
        tokenizer=tokenizer,
        device=resolved_device,
        dtype=resolved_dtype,
    )

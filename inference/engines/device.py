"""Where a model runs and in what precision."""

from typing import Any


def device_resolve(*, preference: str) -> str:
    """`auto` picks CUDA when a GPU is visible, else CPU; anything else is taken as given."""
    import torch

    if preference != "auto":
        return preference
    return "cuda" if torch.cuda.is_available() else "cpu"


def dtype_resolve(*, preference: str, device: str) -> Any:
    """`auto` is bfloat16 on CUDA (half the memory, native on modern GPUs), float32 on CPU."""
    import torch

    if preference == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    names = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if preference not in names:
        raise ValueError(f"unsupported dtype {preference!r}; use one of {sorted(names)} or 'auto'")
    return names[preference]

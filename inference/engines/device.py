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


def cpu_threads_apply(*, preference: int) -> int:
    """Set torch's CPU threads for this process; 0 means all cores but one.

    A serving process is never only torch: the event loop, token relays and the database
    need CPU too. Giving torch every core makes its threads spin against them, which on a
    small machine costs more than the extra core gains (measured: one stream on two cores
    went from about 240 to about 370 tokens per second with one torch thread instead of two).
    """
    import os

    import torch

    threads = preference if preference > 0 else max(1, (os.cpu_count() or 1) - 1)
    torch.set_num_threads(threads)
    return threads

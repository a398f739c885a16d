"""The local embedding engine: a Hugging Face encoder turned into one vector per input.

The encoder's last hidden states are averaged over each input's real tokens (mean pooling,
padding left out) and scaled to unit length, so a dot product is the cosine similarity.
Inputs are run in batches of `max_batch_size`, each padded to its longest input. Asked for
fewer `dimensions` than the model has, the vector is cut to its first ones and scaled again
(what Matryoshka-trained models are made for; for others it is still a projection).

Loading verifies the manifest first and never runs remote code, as for chat models.
"""

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference.engines.hf_load import hf_model_load
from inference.engines.prompt_bound import tokenizer_max_bytes_per_token


class EmbeddingRefused(ValueError):
    """An input the model cannot embed (longer than its context), or dimensions it has not."""


@dataclass(frozen=True)
class Embeddings:
    vectors: list[list[float]]
    prompt_tokens: int


class LocalEmbeddingEngine:
    """One loaded encoder. Embeds on the caller's thread, one batch at a time."""

    def __init__(
        self,
        *,
        directory: Path,
        manifest: dict[str, str],
        context_length: int,
        device: str = "auto",
        dtype: str = "auto",
        allow_pickle_weights: bool = False,
        cpu_threads: int = 0,
        max_batch_size: int = 32,
    ) -> None:
        from transformers import AutoModel

        loaded = hf_model_load(
            directory=directory,
            manifest=manifest,
            auto_class=AutoModel,
            device=device,
            dtype=dtype,
            allow_pickle_weights=allow_pickle_weights,
            cpu_threads=cpu_threads,
        )
        self.device, self.dtype = loaded.device, loaded.dtype
        self.tokenizer, self.model = loaded.tokenizer, loaded.model
        self.context_length = context_length
        self.max_batch_size = max_batch_size
        self.dimensions = int(self.model.config.hidden_size)
        self.max_bytes_per_token = tokenizer_max_bytes_per_token(self.tokenizer)
        # One forward pass at a time: the model is shared by every request thread.
        self._lock = threading.Lock()

    def close(self) -> None:
        """Nothing runs in the background."""

    def embed(self, texts: list[str], *, dimensions: int | None = None) -> Embeddings:
        """One unit vector per text, in order; raises EmbeddingRefused before any is computed."""
        if dimensions is not None and not 1 <= dimensions <= self.dimensions:
            raise EmbeddingRefused(f"dimensions must be from 1 to {self.dimensions} for this model")
        encoded = [self.tokenizer(text)["input_ids"] for text in texts]
        for index, ids in enumerate(encoded):
            if len(ids) > self.context_length:
                raise EmbeddingRefused(
                    f"input[{index}] is {len(ids)} tokens; this model embeds at most {self.context_length}"
                )
        vectors: list[list[float]] = []
        for start in range(0, len(encoded), self.max_batch_size):
            vectors += self._batch(encoded[start : start + self.max_batch_size], dimensions)
        return Embeddings(vectors=vectors, prompt_tokens=sum(len(ids) for ids in encoded))

    def _batch(self, encoded: list[list[int]], dimensions: int | None) -> list[list[float]]:
        import torch

        pad = self.tokenizer.pad_token_id or 0
        width = max(len(ids) for ids in encoded)
        input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids in encoded], device=self.device)
        mask = torch.tensor(
            [[1] * len(ids) + [0] * (width - len(ids)) for ids in encoded], device=self.device
        )
        with self._lock, torch.inference_mode():
            hidden: Any = self.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)
        if dimensions is not None:
            pooled = pooled[:, :dimensions]
        unit: list[list[float]] = torch.nn.functional.normalize(pooled.float(), dim=-1).tolist()
        return unit

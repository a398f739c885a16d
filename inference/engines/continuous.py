"""Continuous batching: requests join and leave a running batch between decoding steps.

Static batches (one `generate()` per batch) make a request that arrives mid-batch wait
for the whole batch. Here one decoding loop owns the batch: before each step it prefills
whatever arrived (their first tokens come from that prefill) and merges their key/value
cache into the running one; after each step it retires the rows that ended. Rows are
left-padded to a common length, so every row's next token comes from the last column, and
each row's position ids count only its own tokens. Requests that say others are on their way
with them (`BatchRequest.arriving_with`) find an idle batch waiting a moment for those, so
that they share one prefill and start unpadded.

The cache is manipulated directly, which is exact for the plain `DynamicLayer` cache that
most decoder-only models use. Models with other layers (sliding windows, quantised caches)
are served by static batches instead (`continuous_batching_supported`).
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from inference.engines.base import FinishReason, GenerationResult
from inference.engines.batching import BatchRequest, RequestScheduler
from inference.engines.constraints import constraints_apply
from inference.engines.detokenize import IncrementalDetokenizer
from inference.engines.logprobs import TokenLogprobs
from inference.engines.sampling import PerRowSampling, seeded_rows_sample
from inference.engines.streaming import RowStreamer

logger = logging.getLogger(__name__)

# How long an idle model waits for the requests that the first says are on their way
# (`inference.chat.arrivals`). Measured here (2 cores): of eight chats sent at once through a
# web process, Redis and a Celery worker, the eighth reached the model 7 to 17 ms after the first.
COMPANIONS_WAIT_SECONDS = 0.03


def continuous_batching_supported(model: Any) -> bool:
    """Whether every layer of the model's cache is a plain growing key/value cache."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    if getattr(model.config, "is_encoder_decoder", False):
        return False
    try:
        cache = DynamicCache(config=model.config)
    except Exception:  # noqa: BLE001 - a config DynamicCache cannot read: use static batches
        return False
    layers = list(getattr(cache, "layers", None) or [])
    return bool(layers) and all(type(layer) is DynamicLayer for layer in layers)


@dataclass
class _Row:
    streamer: RowStreamer
    started: float

    @property
    def request(self) -> BatchRequest:
        return self.streamer.request


class ContinuousBatch:
    """The rows decoding together: their streams, shared cache, attention mask and positions."""

    def __init__(
        self, *, model: Any, tokenizer: Any, device: Any, pad_token_id: int, logprobs: TokenLogprobs
    ) -> None:
        import torch

        self._torch = torch
        self._model = model
        self._tokenizer = tokenizer
        self._logprobs = logprobs
        self._device = device
        self._pad = pad_token_id
        self._eos = tokenizer.eos_token_id
        suppress = getattr(model.generation_config, "suppress_tokens", None) or []
        self._suppress = torch.tensor(suppress, dtype=torch.long, device=device) if suppress else None
        self.rows: list[_Row] = []
        self._cache: Any = None
        self._mask: Any = None  # (rows, length): 1 for real tokens, 0 for left padding
        self._positions: Any = None  # (rows,): the position id of each row's next token
        self._last: Any = None  # (rows,): each row's latest token, the next step's input

    def __len__(self) -> int:
        return len(self.rows)

    # --- admitting and stepping -------------------------------------------------------------

    def admit(self, requests: list[BatchRequest]) -> None:
        """Prefill `requests` together, stream their first tokens, and merge them into the batch."""
        from transformers import DynamicCache

        torch = self._torch
        width = max(len(request.prompt_ids) for request in requests)
        input_ids = torch.tensor(
            [[self._pad] * (width - len(r.prompt_ids)) + r.prompt_ids for r in requests], device=self._device
        )
        mask = torch.tensor(
            [[0] * (width - len(r.prompt_ids)) + [1] * len(r.prompt_ids) for r in requests],
            device=self._device,
        )
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        output = self._model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=DynamicCache(config=self._model.config),
            use_cache=True,
        )
        now = time.monotonic()
        rows = [
            _Row(
                streamer=RowStreamer(
                    request=request,
                    detokenizer=IncrementalDetokenizer(self._tokenizer),
                    eos_token_id=self._eos,
                ),
                started=now,
            )
            for request in requests
        ]
        logits = output.logits[:, -1, :]
        scored = self._scored(logits, rows)
        tokens = self._pick(logits, rows)
        self._merge(rows=rows, cache=output.past_key_values, mask=mask, positions=mask.sum(-1), tokens=tokens)
        self._emit(rows, tokens, scored)

    def step(self) -> None:
        """One decoding step for every row, then stream each row's token."""
        torch = self._torch
        self._mask = torch.cat([self._mask, torch.ones_like(self._mask[:, :1])], dim=1)
        output = self._model(
            input_ids=self._last[:, None],
            attention_mask=self._mask,
            position_ids=self._positions[:, None],
            past_key_values=self._cache,
            use_cache=True,
        )
        self._positions = self._positions + 1
        logits = output.logits[:, -1, :]
        scored = self._scored(logits, self.rows)
        tokens = self._pick(logits, self.rows)
        self._last = tokens
        self._emit(self.rows, tokens, scored)

    def retire(self) -> None:
        """Finish the rows that ended and drop them (and padding no row needs) from the state."""
        torch = self._torch
        ended = [index for index, row in enumerate(self.rows) if self._ended(row)]
        if not ended:
            return
        for index in ended:
            streamer = self.rows[index].streamer
            streamer.request.finish(
                result=GenerationResult(
                    prompt_tokens=len(streamer.request.prompt_ids),
                    completion_tokens=streamer.count,
                    finish_reason=streamer.finish_reason,
                )
            )
        keep = [index for index in range(len(self.rows)) if index not in set(ended)]
        self.rows = [self.rows[index] for index in keep]
        if not keep:
            self._cache = self._mask = self._positions = self._last = None
            return
        kept = torch.tensor(keep, device=self._device)
        self._mask, self._positions, self._last = self._mask[kept], self._positions[kept], self._last[kept]
        # Columns that are padding in every remaining row are dead weight in each step.
        first_used = int(self._mask.any(dim=0).nonzero()[0])
        self._mask = self._mask[:, first_used:]
        for layer in self._cache.layers:
            layer.keys = layer.keys[kept, :, first_used:, :]
            layer.values = layer.values[kept, :, first_used:, :]

    def fail(self, error: BaseException) -> None:
        """End every row with `error` (the model raised mid-step): the state cannot be trusted."""
        for row in self.rows:
            if not row.request.finished.is_set():
                row.request.finish(error=error)
        self.rows = []
        self._cache = self._mask = self._positions = self._last = None

    # --- helpers -------------------------------------------------------------------------------

    def _ended(self, row: _Row) -> bool:
        streamer, params = row.streamer, row.request.params
        if row.request.cancelled.is_set():
            streamer.end(after=streamer.count, because=FinishReason.CANCELLED)
            return True
        if not streamer.open or streamer.saw_stop:
            return True
        if params.max_seconds is not None and time.monotonic() - row.started > params.max_seconds:
            streamer.end(after=streamer.count, because=FinishReason.LENGTH)
            return True
        return False

    def _scored(self, logits: Any, rows: list[_Row]) -> Any:
        """Where a row asks for log probabilities: the step's scores as the model's generation
        config leaves them (its suppressed tokens out), before `_pick` shapes them per row."""
        if all(row.request.params.logprobs is None for row in rows):
            return None
        scores = logits.float().clone()
        if self._suppress is not None:
            scores[:, self._suppress] = float("-inf")
        return scores

    def _emit(self, rows: list[_Row], tokens: Any, scored: Any) -> None:
        """Stream each row's token (with its log probability, where the row asked for them)."""
        tops = [row.request.params.logprobs for row in rows]
        entries = [None] * len(rows) if scored is None else self._logprobs.rows(scored, tokens, tops)
        for row, token_id, entry in zip(rows, tokens.tolist(), entries, strict=True):
            if row.streamer.open and not row.request.cancelled.is_set():
                constraint = row.request.constraint
                if constraint is not None and not constraint.accept(int(token_id)):
                    logger.warning("a constrained row picked token %d its grammar refuses", token_id)
                row.streamer.put_token(int(token_id), entry)

    def _pick(self, logits: Any, rows: list[_Row]) -> Any:
        """Each row's next token: what its grammar allows (if it has one), suppressed tokens
        never (unless they are all its grammar allows), then greedy or sampled per row."""
        torch = self._torch
        scores = logits.float()
        constrained = constraints_apply(scores, [row.request.constraint for row in rows])
        if self._suppress is not None:
            allowed = scores if constrained else None
            scores = scores.clone() if constrained else scores
            scores[:, self._suppress] = float("-inf")
            if allowed is not None:
                nothing_left = torch.isneginf(scores).all(dim=-1, keepdim=True)
                scores = torch.where(nothing_left, allowed, scores)
        temperatures = [row.request.params.temperature for row in rows]
        if all(temperature <= 0 for temperature in temperatures):
            return scores.argmax(dim=-1)
        sampling = PerRowSampling(
            temperatures=temperatures,
            top_ps=[row.request.params.top_p for row in rows],
            device=self._device,
        )
        probabilities = sampling(None, scores).softmax(dim=-1)
        picked = torch.multinomial(probabilities, num_samples=1).squeeze(1)
        for row, token in seeded_rows_sample(probabilities, [row.request.generator for row in rows]).items():
            picked[row] = token
        return picked

    def _merge(self, *, rows: list[_Row], cache: Any, mask: Any, positions: Any, tokens: Any) -> None:
        torch = self._torch
        if not self.rows:
            self.rows, self._cache, self._mask, self._positions, self._last = (
                rows,
                cache,
                mask,
                positions,
                tokens,
            )
            return
        width = max(self._mask.shape[1], mask.shape[1])

        def left_pad(tensor: Any, dim: int) -> Any:
            missing = width - tensor.shape[dim]
            if missing == 0:
                return tensor
            shape = list(tensor.shape)
            shape[dim] = missing
            return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)

        self._mask = torch.cat([left_pad(self._mask, 1), left_pad(mask, 1)], dim=0)
        for layer, new in zip(self._cache.layers, cache.layers, strict=True):
            layer.keys = torch.cat([left_pad(layer.keys, 2), left_pad(new.keys, 2)], dim=0)
            layer.values = torch.cat([left_pad(layer.values, 2), left_pad(new.values, 2)], dim=0)
        self._positions = torch.cat([self._positions, positions])
        self._last = torch.cat([self._last, tokens])
        self.rows = self.rows + rows


class ContinuousBatchScheduler(RequestScheduler):
    """One decoding loop per model: admit what waits, step everyone, retire who ended."""

    def __init__(self, *, new_batch: Callable[[], ContinuousBatch], max_batch_size: int, name: str) -> None:
        super().__init__(max_batch_size=max_batch_size, name=name)
        self._new_batch = new_batch

    def _admissions(self, batch: ContinuousBatch) -> list[BatchRequest] | None:
        """What may join before the next step (waiting only while nothing decodes); None once closed."""
        with self._ready:
            while not self._closed and not self._pending and not len(batch):
                self._ready.wait()
            if not len(batch):
                self._companions_wait()
            if self._closed:
                return None
            room = self._max_batch_size - len(batch)
            joining = self._pending[:room]
            del self._pending[: len(joining)]
        return self._take_ready(joining)

    def _companions_wait(self) -> None:
        """On an idle model, before the first prefill: wait for the requests that those waiting
        say are on their way (`BatchRequest.arriving_with`), so that they are prefilled together
        instead of joining one by one; at most COMPANIONS_WAIT_SECONDS after the first arrived.
        Called holding `_ready`; a request that comes alone does not wait."""
        while not self._closed and self._pending:
            expected = 1 + max(request.arriving_with for request in self._pending)
            left = self._pending[0].submitted_at + COMPANIONS_WAIT_SECONDS - time.monotonic()
            if len(self._pending) >= min(expected, self._max_batch_size) or left <= 0:
                return
            self._ready.wait(left)

    def _loop(self) -> None:
        import torch

        # The whole loop is inference: the batch's tensors never need autograd.
        with torch.inference_mode():
            self._decode()

    def _decode(self) -> None:
        batch = self._new_batch()
        while (joining := self._admissions(batch)) is not None:
            try:
                if joining:
                    self.batch_sizes[len(joining)] += 1
                    batch.admit(joining)
                    batch.retire()
                if len(batch):
                    batch.step()
                    batch.retire()
            except Exception as exc:
                logger.exception("continuous batch of %d rows failed", len(batch) + len(joining))
                batch.fail(exc)
                for request in joining:
                    if not request.finished.is_set():
                        request.finish(error=exc)
                batch = self._new_batch()
        batch.fail(RuntimeError("the model was unloaded"))

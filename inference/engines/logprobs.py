"""Log probabilities of the tokens a local model picks, in OpenAI's shape.

They are the model's own distribution at each step (the log-softmax of its logits, with the
tokens its generation config suppresses left out), before the request's settings shape the
pick: temperature, top-p, a structured output's grammar. So they say how likely the model
found each token, which is what applications read them for (confidence, classification by
the first token's alternatives), and a greedy and a sampled answer report the same figures
for the same token. vLLM reports the model's distribution the same way by default. A token
the model found impossible (a grammar can force one) is reported at -9999.0, as OpenAI does:
JSON has no infinity.

A token's `bytes` are its own bytes: a byte-level tokenizer's token may be part of a
multi-byte character, and its `token` then shows the bytes escaped (`\\xe2`), as OpenAI does.
"""

from typing import Any

from inference.engines.base import TokenLogprob

# OpenAI's limit on top_logprobs.
MAX_TOP_LOGPROBS = 20
# What an impossible token's log probability is reported as.
_FLOOR = -9999.0


class TokenLogprobs:
    """Builds the entries of one tokenizer's tokens; each token's text and bytes read once."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._byte_level = _byte_level_alphabet(tokenizer)
        # Each token's text and bytes, once read: at most the vocabulary.
        self._tokens: dict[int, tuple[str, list[int]]] = {}

    def _token(self, token_id: int) -> tuple[str, list[int]]:
        known = self._tokens.get(token_id)
        if known is None:
            known = self._tokens[token_id] = self._token_read(token_id)
        return known

    def _token_read(self, token_id: int) -> tuple[str, list[int]]:
        if self._byte_level is not None:
            piece = self._tokenizer.convert_ids_to_tokens(token_id)
            if isinstance(piece, str) and all(char in self._byte_level for char in piece):
                raw = bytes(self._byte_level[char] for char in piece)
                return raw.decode("utf-8", errors="backslashreplace"), list(raw)
        text = str(self._tokenizer.decode([token_id]))
        return text, list(text.encode())

    def _alternative(self, token_id: int, logprob: float) -> dict[str, Any]:
        text, raw = self._token(token_id)
        return {"token": text, "logprob": max(logprob, _FLOOR), "bytes": raw}

    def rows(self, logits: Any, picked: Any, tops: list[int | None]) -> list[TokenLogprob | None]:
        """Each row's entry for the token it picked (None for the rows that did not ask).

        `logits` are the step's scores (rows, vocabulary) before the request's settings,
        `picked` each row's token, `tops` each row's count of alternatives (None: not asked).
        """
        import torch

        asking = [row for row, top in enumerate(tops) if top is not None]
        entries: list[TokenLogprob | None] = [None] * len(tops)
        if not asking:
            return entries
        index = torch.tensor(asking, device=logits.device)
        scores = logits[index].float().log_softmax(dim=-1)
        chosen_ids = picked[index]
        chosen = scores.gather(1, chosen_ids[:, None]).squeeze(1).tolist()
        width = max(top or 0 for top in tops)
        best = scores.topk(width, dim=-1)
        top_values, top_ids = best.values.tolist(), best.indices.tolist()
        for position, row in enumerate(asking):
            count = tops[row] or 0
            entry = self._alternative(int(chosen_ids[position]), chosen[position])
            entry["top_logprobs"] = [
                self._alternative(token_id, value)
                for token_id, value in zip(
                    top_ids[position][:count], top_values[position][:count], strict=True
                )
            ]
            entries[row] = entry
        return entries


def _byte_level_alphabet(tokenizer: Any) -> dict[str, int] | None:
    """A byte-level tokenizer's map from the characters its tokens are spelled in to the bytes
    they stand for (GPT-2's); None for any other tokenizer."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    decoder = getattr(backend, "decoder", None)
    if decoder is None or type(decoder).__name__ != "ByteLevel":
        return None
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return {char: byte for byte, char in bytes_to_unicode().items()}


def logprobs_content_read(raw: Any) -> list[TokenLogprob] | None:
    """An upstream choice's `logprobs` read strictly: its `content` entries rebuilt from the
    fields OpenAI defines ([] where it sent none); None where it is not that shape."""
    if raw is None:
        return []
    content = raw.get("content") if isinstance(raw, dict) else None
    if content is None and isinstance(raw, dict):
        return []
    if not isinstance(content, list):
        return None
    entries: list[TokenLogprob] = []
    for item in content:
        entry = _alternative_read(item)
        tops = item.get("top_logprobs") if isinstance(item, dict) else None
        if entry is None or not isinstance(tops, list | None):
            return None
        alternatives = [_alternative_read(top) for top in tops or ()]
        if any(alternative is None for alternative in alternatives):
            return None
        entries.append({**entry, "top_logprobs": alternatives})
    return entries


def _alternative_read(raw: Any) -> dict[str, Any] | None:
    if not isinstance(raw, dict):
        return None
    token, logprob, raw_bytes = raw.get("token"), raw.get("logprob"), raw.get("bytes")
    if not isinstance(token, str) or isinstance(logprob, bool) or not isinstance(logprob, int | float):
        return None
    if raw_bytes is not None and not (
        isinstance(raw_bytes, list) and all(isinstance(b, int) and 0 <= b <= 255 for b in raw_bytes)  # noqa: PLR2004
    ):
        return None
    return {"token": token, "logprob": float(logprob), "bytes": raw_bytes}

"""How many tokens a prompt has at least, known from its bytes alone: no tokenizing.

A token stands for at most M bytes of text, M being the longest token of the vocabulary. A
prompt of B bytes therefore has at least B / M tokens, and one whose bytes exceed
(context - max_tokens) x M surely cannot fit: it is refused before anyone tokenizes it.

The bound holds only where every byte of the text ends up in some token and no token stands
for an unbounded run of text: byte-level BPE (GPT-2, Llama 3, Qwen, the demo model), or BPE
and Unigram with byte fallback (Llama 2, Mistral, Gemma), behind normalizers that never
shrink the text. Any other tokenizer (WordPiece, an unknown-token fallback, a normalizer that
strips characters) gets no bound from its vocabulary.
"""

import json
import math
from collections.abc import Iterable
from typing import Any

from inference.engines.base import ChatMessage

# Canonical composition leaves text at least a third of its bytes (the worst case, Hangul
# jamo, composes 9 bytes into 3), so a token of normalized text stands for 3x its bytes at most.
_NFC_SHRINK = 3


def messages_bytes(messages: Iterable[ChatMessage]) -> int:
    """The UTF-8 size of the messages' text: what the tokenizer will be given, at least."""
    return sum(len(message.content.encode()) for message in messages)


def prompt_byte_limit(*, context_length: int, max_tokens: int, max_bytes_per_token: int) -> int:
    """The most bytes of messages that could still fit the context beside `max_tokens`."""
    return max(0, context_length - max_tokens) * max_bytes_per_token


def tokenizer_max_bytes_per_token(tokenizer: Any) -> int | None:
    """The most bytes of input one token of `tokenizer` can stand for; None where no bound holds.

    Measured on the tokens' own strings (added tokens included, since a user may type them),
    in UTF-8: a byte-level token's characters each stand for one byte and a byte-fallback
    piece like `<0x41>` for one, so the measure is never below what the token covers.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:  # a slow tokenizer: its rules cannot be read
        return None
    spec = json.loads(backend.to_str())
    model = spec.get("model") or {}
    byte_level = _has_byte_level(spec.get("pre_tokenizer"))
    byte_fallback = model.get("type") in ("BPE", "Unigram") and bool(model.get("byte_fallback"))
    if not (byte_level or byte_fallback):
        return None
    shrink = _normalizer_shrink(spec.get("normalizer"))
    if shrink is None:
        return None
    vocabulary = tokenizer.get_vocab()
    if not vocabulary:
        return None
    return max(len(token.encode()) for token in vocabulary) * shrink


def _has_byte_level(pre_tokenizer: dict[str, Any] | None) -> bool:
    if not pre_tokenizer:
        return False
    if pre_tokenizer.get("type") == "Sequence":
        return any(_has_byte_level(item) for item in pre_tokenizer.get("pretokenizers") or [])
    return pre_tokenizer.get("type") == "ByteLevel"


def _normalizer_shrink(normalizer: dict[str, Any] | None) -> int | None:
    """By how much a normalizer can shrink text at most; None when it can drop text outright."""
    if not normalizer:
        return 1
    kind = normalizer.get("type")
    if kind == "Sequence":
        shrinks = [_normalizer_shrink(item) for item in normalizer.get("normalizers") or []]
        return None if None in shrinks else math.prod(shrink or 1 for shrink in shrinks)
    if kind == "Replace":
        # A literal replaced by something at least as long (Llama: " " by "▁") never shrinks.
        pattern = (normalizer.get("pattern") or {}).get("String")
        content = normalizer.get("content") or ""
        grows = isinstance(pattern, str) and bool(pattern) and len(content.encode()) >= len(pattern.encode())
        return 1 if grows else None
    return {"Prepend": 1, "NFC": _NFC_SHRINK}.get(str(kind))

"""Turn a growing list of token ids into text deltas, one per token.

Decoding each token on its own breaks multi-byte characters (byte-level BPE) and drops
word-leading spaces (SentencePiece). Like vLLM, decode a short window before the new
token and emit only what the new token added, holding text back while it ends in an
incomplete character (U+FFFD).
"""

from typing import Any


class IncrementalDetokenizer:
    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._ids: list[int] = []
        self._prefix_offset = 0
        self._read_offset = 0

    def _decode(self, ids: list[int]) -> str:
        return str(self._tokenizer.decode(ids, skip_special_tokens=True))

    def add(self, token_id: int, *, final: bool = False) -> str:
        """Append one token; return the text it completes ("" while a character is pending).

        With `final`, flush whatever is pending, complete or not: no token follows.
        """
        self._ids.append(token_id)
        prefix_text = self._decode(self._ids[self._prefix_offset : self._read_offset])
        new_text = self._decode(self._ids[self._prefix_offset :])
        if not final and (len(new_text) <= len(prefix_text) or new_text.endswith("\ufffd")):
            return ""
        self._prefix_offset = self._read_offset
        self._read_offset = len(self._ids)
        return new_text[len(prefix_text) :]

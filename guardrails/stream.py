"""Redaction of an answer as it streams: no part of a match ever leaves.

Text that could still be the start of a match is held back until it cannot (the way a stop
sequence is), so a card number or key split across tokens is replaced whole, never sent in
pieces. What is held is at most a word or a run of digits and separators, the start of a deny
list's phrase, or a private key's block up to its end (at most HOLD_LIMIT characters, past
which it is let go, redacted). A deny list's matches become `[DENIED]`.
"""

import re
from collections import Counter
from typing import Any

from guardrails.detectors import Finding, findings, findings_merged, redacted
from guardrails.rules import Guard, deny_findings, pattern_compile

# Tails that may still grow into a match: a word-like run (emails, keys, tokens, IPv6), digits
# with the separators card and phone numbers and IBANs use, an IBAN's start, a private key's
# block or the dashes that may open one.
_TAILS = (
    re.compile(r"[A-Za-z0-9._%+@:/=-]+$"),
    re.compile(r"[+(]?[0-9][0-9 ().-]*$"),
    re.compile(r"[A-Z]{2}[0-9]{2}[A-Z0-9 ]*$"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----(?:(?!-----END)[\s\S])*$"),
    re.compile(r"-[-A-Z ]*$"),
)
HOLD_LIMIT = 8192


class StreamRedactor:
    """Feed it the answer's texts in order (`push`), then `finish`; each returns what may be
    sent now. `redacted` counts what was replaced, by kind (`denied` for the deny list)."""

    def __init__(self, *, kinds: frozenset[str], deny: Any = None, phrases: tuple[str, ...] = ()) -> None:
        self._kinds, self._deny, self._phrases = kinds, deny, phrases
        self._held = ""
        self.redacted: Counter[str] = Counter()

    def _found(self, text: str) -> list[Finding]:
        return findings_merged(deny_findings(self._deny, text), findings(text, kinds=self._kinds))

    def push(self, text: str) -> str:
        self._held += text
        held = self._held
        cut = min((match.start() for tail in _TAILS if (match := tail.search(held))), default=len(held))
        cut = min(cut, self._phrase_start(held))
        found = self._found(held)
        # A match reaching past the cut may grow yet: hold it whole.
        for finding in found:
            if finding.start < cut < finding.end:
                cut = finding.start
        if len(held) - cut > HOLD_LIMIT:
            cut = len(held)
        ready = [finding for finding in found if finding.end <= cut]
        self._held = held[cut:]
        self.redacted.update(finding.kind for finding in ready)
        return redacted(held[:cut], ready)

    def _phrase_start(self, held: str) -> int:
        """Where a deny phrase may be forming at the end of `held` (its length: none)."""
        lowered, start = held.lower(), len(held)
        for phrase in self._phrases:
            for size in range(min(len(phrase) - 1, len(lowered)), 0, -1):
                if lowered.endswith(phrase[:size]):
                    start = min(start, len(held) - size)
                    break
        return start

    def finish(self) -> str:
        """What is still held, redacted: the answer has ended, nothing more can join it."""
        held, self._held = self._held, ""
        found = self._found(held)
        self.redacted.update(finding.kind for finding in found)
        return redacted(held, found)


def answer_redaction(guard: Guard | None) -> dict[str, Any] | None:
    """What an answer under `guard` is redacted of, JSON-safe for a worker that stores its
    reply: the kinds, and the deny list's source (None: nothing)."""
    if guard is None or not guard.redacts_answers:
        return None
    return {"kinds": sorted(guard.watched), "deny": guard.deny_source}


def stored_reply(text: str, redaction: dict[str, Any] | None) -> str:
    """A reply as it is stored: redacted as its answer was sent (`answer_redaction`)."""
    if not redaction:
        return text
    deny = pattern_compile(redaction["deny"]) if redaction.get("deny") else None
    redactor = StreamRedactor(kinds=frozenset(redaction["kinds"]), deny=deny)
    return redactor.push(text) + redactor.finish()

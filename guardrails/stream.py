"""Redaction of an answer as it streams: no part of a match ever leaves.

Text that could still be the start of a match is held back until it cannot (the way a stop
sequence is), so a card number or key split across tokens is replaced whole, never sent in
pieces. What is held is at most a word or a run of digits and separators, or a private key's
block up to its end (at most HOLD_LIMIT characters, past which it is let go, redacted).
"""

import re
from collections import Counter

from guardrails.detectors import findings, redacted

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
    sent now. `redacted` counts what was replaced, by kind."""

    def __init__(self, *, kinds: frozenset[str]) -> None:
        self._kinds = kinds
        self._held = ""
        self.redacted: Counter[str] = Counter()

    def push(self, text: str) -> str:
        self._held += text
        held = self._held
        cut = min((match.start() for tail in _TAILS if (match := tail.search(held))), default=len(held))
        found = findings(held, kinds=self._kinds)
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

    def finish(self) -> str:
        """What is still held, redacted: the answer has ended, nothing more can join it."""
        held, self._held = self._held, ""
        found = findings(held, kinds=self._kinds)
        self.redacted.update(finding.kind for finding in found)
        return redacted(held, found)

"""The check of what goes to a model: its length, the deny lists, and personal data and
secrets (each kind allowed, redacted to its placeholder, or blocking the request).

Failure mode: `GuardBlocked` names the policy's rule and the kinds found, never what matched;
nothing was sent anywhere. A deny pattern too slow to finish on the text blocks it.
"""

from collections import Counter
from dataclasses import dataclass, field

import regex

from guardrails.detectors import findings, redacted
from guardrails.rules import PATTERN_SECONDS, Guard

_NAMES = {
    "credential": "a credential (a key, token or private key)",
    "card": "a payment card number",
    "iban": "a bank account number (IBAN)",
    "email": "an email address",
    "ip_address": "an IP address",
    "phone": "a phone number",
}


class GuardBlocked(Exception):
    """The request may not go to the model. `code`: content_blocked or prompt_too_long."""

    def __init__(self, *, code: str, message: str, rule: str, kinds: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.code, self.message, self.rule, self.kinds = code, message, rule, kinds


@dataclass
class Guarded:
    """The texts as the model may see them, and how many of each kind were redacted."""

    texts: list[str]
    redacted: Counter[str] = field(default_factory=Counter)


def prompt_guard(*, guard: Guard, texts: list[str]) -> Guarded:
    """Check `texts` (a request's messages) against `guard`, or raise GuardBlocked."""
    policies = ", ".join(guard.policies)
    size = sum(len(text) for text in texts)
    if guard.max_prompt_chars is not None and size > guard.max_prompt_chars:
        raise GuardBlocked(
            code="prompt_too_long",
            message=f"The prompt is {size} characters; this model takes at most {guard.max_prompt_chars} "
            f"(guardrail policy {policies}).",
            rule="max_prompt_chars",
        )
    if guard.deny is not None:
        for text in texts:
            _deny_check(guard, text, policies)
    watched = guard.watched
    if not watched:
        return Guarded(texts=list(texts))
    out: list[str] = []
    counts: Counter[str] = Counter()
    blocking = guard.kinds("block")
    for text in texts:
        found = findings(text, kinds=watched)
        if blocked := sorted({finding.kind for finding in found} & blocking):
            raise GuardBlocked(
                code="content_blocked",
                message=f"The request was blocked by guardrail policy {policies}: it contains "
                f"{', '.join(_NAMES[kind] for kind in blocked)}. Remove it and try again.",
                rule="pii",
                kinds=tuple(blocked),
            )
        counts.update(finding.kind for finding in found)
        out.append(redacted(text, found))
    return Guarded(texts=out, redacted=counts)


def _deny_check(guard: Guard, text: str, policies: str) -> None:
    try:
        denied = guard.deny.search(text, timeout=PATTERN_SECONDS) is not None
    except TimeoutError:
        denied = True  # a check that cannot finish does not let the text through
    except regex.error:  # pragma: no cover - patterns are compiled when saved
        denied = True
    if denied:
        raise GuardBlocked(
            code="content_blocked",
            message=f"The request was blocked by guardrail policy {policies}: it contains a denied term.",
            rule="deny_list",
        )

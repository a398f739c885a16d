"""Built-in detectors of personal data and secrets in text: no model, no download.

Each kind is a regular expression and, where a shape alone says too little, a check of the
match (Luhn for card numbers, ISO 13616's mod 97 for IBANs, the address parser for IPs,
digit counts for phone numbers). Where matches of two kinds overlap, the earlier in KINDS wins.
"""

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass

KINDS = ("credential", "card", "iban", "email", "ip_address", "phone")
# A deny list's match in an answer (guardrails.rules).
DENIED = "denied"
# What a redacted match becomes: the kind, never the value.
PLACEHOLDERS = {kind: f"[{kind.upper()}]" for kind in (*KINDS, DENIED)}


@dataclass(frozen=True)
class Finding:
    kind: str
    start: int
    end: int


# How long each kind may be: card numbers (ISO/IEC 7812), IBANs (ISO 13616), phone numbers
# (E.164's 15 digits; at least 9 makes a number with its area code).
CARD_DIGITS = (13, 19)
IBAN_LENGTH = (15, 34)
PHONE_DIGITS = (9, 15)


def _luhn(text: str) -> bool:
    digits = [int(char) for char in text if char.isdigit()]
    if not CARD_DIGITS[0] <= len(digits) <= CARD_DIGITS[1]:
        return False
    doubled = [digit * 2 - 9 * (digit > 4) for digit in digits[-2::-2]]  # noqa: PLR2004 - Luhn's rule
    return (sum(digits[-1::-2]) + sum(doubled)) % 10 == 0


def _iban(text: str) -> bool:
    compact = text.replace(" ", "")
    if not IBAN_LENGTH[0] <= len(compact) <= IBAN_LENGTH[1]:
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


def _ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _phone(text: str) -> bool:
    digits = sum(char.isdigit() for char in text)
    separated = text.startswith(("+", "(")) or any(char in text for char in " .-")
    return PHONE_DIGITS[0] <= digits <= PHONE_DIGITS[1] and separated


def _any(_text: str) -> bool:
    return True


_CREDENTIALS = "|".join(
    (
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
        r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}",  # a JWT
        r"\b(?:sk|pk|rk)-(?:proj-|live-|test-)?[A-Za-z0-9_-]{16,}",  # OpenAI, Stripe
        r"\bgk_[a-z0-9]{10}_[A-Za-z0-9_-]{16,}",  # Gatehouse's own keys
        r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",  # AWS access key ids
        r"\bgh[pousr]_[A-Za-z0-9]{36,}",  # GitHub tokens
        r"\bxox[abprs]-[A-Za-z0-9-]{10,}",  # Slack tokens
        r"\bAIza[0-9A-Za-z_-]{35}",  # Google API keys
    )
)
# Substrings every credential of `_CREDENTIALS` holds: a text with none is not searched.
_CREDENTIAL_MARKERS = (
    "-----BEGIN", "eyJ", "sk-", "pk-", "rk-", "gk_", "AKIA", "ASIA", "ghp_", "gho_", "ghu_", "ghs_",
    "ghr_", "xox", "AIza",
)  # fmt: skip


@dataclass(frozen=True)
class _Detector:
    pattern: re.Pattern[str]
    valid: Callable[[str], bool]
    # A cheap test a text must pass for the pattern to be worth searching.
    worth: Callable[[str], bool]


_DETECTORS: dict[str, tuple[_Detector, ...]] = {
    "credential": (
        _Detector(
            re.compile(_CREDENTIALS), _any, lambda text: any(mark in text for mark in _CREDENTIAL_MARKERS)
        ),
    ),
    "card": (_Detector(re.compile(r"(?<![0-9])[0-9](?:[ -]?[0-9]){12,18}(?![0-9])"), _luhn, _any),),
    "iban": (_Detector(re.compile(r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}\b"), _iban, _any),),
    "email": (
        _Detector(
            re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
            _any,
            lambda text: "@" in text,
        ),
    ),
    "ip_address": (
        _Detector(
            re.compile(r"(?<![0-9])(?<![0-9]\.)(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?![0-9]|\.[0-9])"), _ip, _any
        ),
        _Detector(
            re.compile(r"(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![0-9A-Fa-f:])"),
            _ip,
            lambda text: text.count(":") >= 2,  # noqa: PLR2004 - an IPv6 address has two at least
        ),
    ),
    "phone": (
        _Detector(
            re.compile(
                r"(?<![\w+])(?:"
                r"\+[1-9][0-9]{0,2}(?:[ .-]?\(?[0-9]{1,4}\)?){2,5}"  # international: +44 20 7946 0958
                r"|\(?[2-9][0-9]{2}\)?[ .-]?[0-9]{3}[ .-]?[0-9]{4}"  # North American: (555) 123-4567
                r"|0[0-9]{1,4}[ .-]?[0-9]{3,4}[ .-]?[0-9]{3,4}"  # national, with a trunk 0: 020 7946 0958
                r")(?![\w])"
            ),
            _phone,
            _any,
        ),
    ),
}


def findings(text: str, *, kinds: frozenset[str] | None = None) -> list[Finding]:
    """Every match of `kinds` (all by default) in `text`, in order, none overlapping."""
    found: list[Finding] = []
    taken: list[tuple[int, int]] = []
    for kind in KINDS:
        if kinds is not None and kind not in kinds:
            continue
        for detector in _DETECTORS[kind]:
            if not detector.worth(text):
                continue
            for match in detector.pattern.finditer(text):
                start, end = match.span()
                if any(start < other_end and other_start < end for other_start, other_end in taken):
                    continue
                if detector.valid(match.group()):
                    found.append(Finding(kind, start, end))
                    taken.append((start, end))
    return sorted(found, key=lambda finding: finding.start)


def text_redacted(text: str, *, kinds: frozenset[str]) -> str:
    """`text` with every match of `kinds` replaced by its placeholder."""
    return redacted(text, findings(text, kinds=kinds)) if kinds else text


def findings_merged(first: list[Finding], second: list[Finding]) -> list[Finding]:
    """Both lists' findings, in order, none overlapping (where two do, the earlier list's wins)."""
    kept = list(first)
    for finding in second:
        if not any(finding.start < other.end and other.start < finding.end for other in kept):
            kept.append(finding)
    return sorted(kept, key=lambda finding: finding.start)


def redacted(text: str, found: list[Finding]) -> str:
    """`text` with each of `found` (none overlapping) replaced by its kind's placeholder."""
    pieces, at = [], 0
    for finding in found:
        pieces += [text[at : finding.start], PLACEHOLDERS.get(finding.kind, "[REDACTED]")]
        at = finding.end
    return "".join([*pieces, text[at:]])

"""The guard a request is held to: its policies (guardrails.models) merged and compiled once,
held per process and dropped everywhere on any change (gatehouse.local_cache)."""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import regex
from django.db.models import Q

from gatehouse.local_cache import LocalCache
from guardrails.detectors import DENIED, Finding
from guardrails.models import ACTIONS, GuardrailPolicy

# A deny pattern that takes longer than this on one text blocks it (the check cannot pass).
PATTERN_SECONDS = 0.05


def pattern_compile(pattern: str) -> Any:
    return regex.compile(pattern, regex.IGNORECASE | regex.VERSION1)


@dataclass(frozen=True)
class Guard:
    """What one request is checked for, from `policies` (their names, for the record)."""

    policies: tuple[str, ...]
    actions: tuple[tuple[str, str], ...]
    deny: Any  # one compiled alternation of the terms and patterns, or None
    max_prompt_chars: int | None
    check_output: bool
    # The deny list's source (for a worker to compile) and its terms of several words, which an
    # answer's redaction holds back while they may still be forming.
    deny_source: str | None = None
    deny_phrases: tuple[str, ...] = ()

    def action(self, kind: str) -> str:
        return dict(self.actions).get(kind, "allow")

    def kinds(self, action: str) -> frozenset[str]:
        return frozenset(kind for kind, wanted in self.actions if wanted == action)

    @property
    def watched(self) -> frozenset[str]:
        """The kinds looked for: those not allowed."""
        return frozenset(kind for kind, action in self.actions if action != "allow")

    @property
    def redacts_answers(self) -> bool:
        return self.check_output and (bool(self.watched) or self.deny is not None)


def deny_findings(deny: Any, text: str) -> list[Finding]:
    """Where `deny` (a compiled deny list) matches `text`; all of it where the search cannot
    finish in time (nothing that cannot be checked is let through)."""
    if deny is None or not text:
        return []
    try:
        return [Finding(DENIED, *match.span()) for match in deny.finditer(text, timeout=PATTERN_SECONDS)]
    except TimeoutError:
        return [Finding(DENIED, 0, len(text))]


def deny_terms_pattern(terms: list[str]) -> str:
    """The terms as one pattern, each matched whole: the word boundaries around one alternation
    (longest first), which the regex engine scans as a set; around each term it cost 100 times
    as much on a 1 KB prompt with 50 terms."""
    ordered = sorted(terms, key=len, reverse=True)
    return rf"(?<!\w)(?:{'|'.join(regex.escape(term) for term in ordered)})(?!\w)"


def _merged(policies: list[GuardrailPolicy]) -> Guard | None:
    if not policies:
        return None
    severity = {action: rank for rank, action in enumerate(ACTIONS)}
    actions: dict[str, str] = {}
    for policy in policies:
        for kind, action in policy.pii.items():
            if severity[action] > severity[actions.get(kind, "allow")]:
                actions[kind] = action
    terms = sorted({term.strip() for policy in policies for term in policy.deny_terms})
    patterns = sorted({pattern for policy in policies for pattern in policy.deny_patterns})
    alternatives = [deny_terms_pattern(terms)] if terms else []
    alternatives += [f"(?:{pattern})" for pattern in patterns]
    limits = [policy.max_prompt_chars for policy in policies if policy.max_prompt_chars is not None]
    source = "|".join(alternatives) if alternatives else None
    return Guard(
        policies=tuple(sorted(policy.name for policy in policies)),
        actions=tuple(sorted(actions.items())),
        deny=pattern_compile(source) if source else None,
        max_prompt_chars=min(limits) if limits else None,
        check_output=any(policy.check_output for policy in policies),
        deny_source=source,
        deny_phrases=tuple(term.lower() for term in terms if len(term.split()) > 1),
    )


_guards: LocalCache[tuple[int, tuple[int, ...]], Guard | None] = LocalCache("guardrails")


def guard_for(*, model_id: int, team_ids: Iterable[int]) -> Guard | None:
    """The guard of a request to `model_id` by a member of `team_ids`; None: nothing to check."""
    teams = tuple(sorted(team_ids))

    def load() -> Guard | None:
        on_model = Q(model_id=model_id) | Q(model__isnull=True)
        policies = list(GuardrailPolicy.objects.filter(on_model, team_id__in=teams)) if teams else []
        return _merged(policies or list(GuardrailPolicy.objects.filter(on_model, team__isnull=True)))

    return _guards.fetch((model_id, teams), load)

"""Writes for guardrail policies: each one audited with its actor, before and after. A change
applies from the next request, in every process."""

from typing import Any

from accounts.models import User
from audit.audited_writes import audited_delete, audited_save
from guardrails.models import GuardrailPolicy

_FIELDS = (
    "name",
    "model_id",
    "team_id",
    "pii",
    "deny_terms",
    "deny_patterns",
    "max_prompt_chars",
    "check_output",
)


def _state(policy: GuardrailPolicy) -> dict[str, Any]:
    state = {name: getattr(policy, name) for name in _FIELDS}
    # How many deny entries, not the entries: a list of banned words is itself sensitive.
    state["deny_terms"] = len(policy.deny_terms)
    state["deny_patterns"] = len(policy.deny_patterns)
    return state


def guardrail_policy_save(*, policy: GuardrailPolicy, actor: User) -> GuardrailPolicy:
    """Create or change a policy (validated: known kinds and actions, patterns that compile);
    audited. Raises ValidationError; nothing is written then."""
    return audited_save(instance=policy, actor=actor, action="guardrail.policy", state=_state)


def guardrail_policy_delete(*, policy: GuardrailPolicy, actor: User) -> None:
    audited_delete(instance=policy, actor=actor, action="guardrail.policy", state=_state)

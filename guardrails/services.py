"""Writes for guardrail policies: each one audited with its actor, before and after. A change
applies from the next request, in every process."""

from typing import Any

from django.db import transaction

from accounts.models import User
from audit.services import audit_event_record
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


@transaction.atomic
def guardrail_policy_save(*, policy: GuardrailPolicy, actor: User) -> GuardrailPolicy:
    """Create or change a policy (validated: known kinds and actions, patterns that compile);
    audited. Raises ValidationError; nothing is written then."""
    before = _state(GuardrailPolicy.objects.select_for_update().get(pk=policy.pk)) if policy.pk else None
    policy.full_clean()
    policy.save()
    audit_event_record(
        action="guardrail.policy.changed" if before else "guardrail.policy.created",
        actor=actor,
        target=policy,
        metadata={"before": before, "after": _state(policy)},
    )
    return policy


@transaction.atomic
def guardrail_policy_delete(*, policy: GuardrailPolicy, actor: User) -> None:
    audit_event_record(
        action="guardrail.policy.deleted", actor=actor, target=policy, metadata={"before": _state(policy)}
    )
    policy.delete()

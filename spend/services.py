"""Writes for budgets: each one audited with its actor, before and after (amounts as text)."""

from typing import Any

from django.db import transaction

from accounts.models import User
from audit.services import audit_event_record
from spend.models import Budget
from spend.money import currency

_FIELDS = ("name", "user_id", "team_id", "api_key_id", "model_id", "period", "amount")


def _state(budget: Budget) -> dict[str, Any]:
    state = {name: getattr(budget, name) for name in _FIELDS}
    state["amount"] = str(budget.amount)
    state["currency"] = currency()
    return state


@transaction.atomic
def budget_save(*, budget: Budget, actor: User) -> Budget:
    """Create or change a budget (validated: whose spend it caps, a positive amount); audited.
    It applies from the next request. Raises ValidationError; nothing is written then."""
    before = _state(Budget.objects.select_for_update().get(pk=budget.pk)) if budget.pk else None
    budget.full_clean()
    budget.save()
    audit_event_record(
        action="budget.changed" if before else "budget.created",
        actor=actor,
        target=budget,
        metadata={"before": before, "after": _state(budget)},
    )
    return budget


@transaction.atomic
def budget_delete(*, budget: Budget, actor: User) -> None:
    """Remove a budget (what it counted stays in the usage records); audited."""
    audit_event_record(
        action="budget.deleted", actor=actor, target=budget, metadata={"before": _state(budget)}
    )
    budget.delete()

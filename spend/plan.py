"""Which budgets a request is held to, as quota limits on `spend:` counters (accounts.quotas).

A counter's key names the period, its window, the subject and the budget, e.g.
`spend:month:202612:team:3:b7`; a total budget's has no window (`spend:total:key:9:b2`).
"""

from datetime import datetime

from django.db.models import Q

from accounts.models import ApiKey, User
from accounts.quotas.ledger import CounterSpec
from accounts.quotas.plan import GRACE_SECONDS, Limit, quota_windows
from gatehouse.local_cache import LocalCache
from spend.models import Budget
from spend.money import money_text, money_units

# A total budget's counter never ends; its key outlives anything that reads it.
_TOTAL_TTL_SECONDS = 10 * 365 * 24 * 3600

# The budgets that may apply to a caller, per (user, key), whatever the model; dropped
# everywhere on any change to budgets, teams or membership (gatehouse.local_cache).
_applicable: LocalCache[tuple[int, int | None], tuple[Budget, ...]] = LocalCache("budgets")


def budgets_applicable(*, user: User, api_key: ApiKey | None) -> tuple[Budget, ...]:
    """The budgets on the user, their teams, the key, and those on a model alone."""

    def load() -> tuple[Budget, ...]:
        groups = user.groups.all()
        subject = Q(user=user) | Q(team__group__in=groups) | (Q(api_key=api_key) if api_key else Q(pk__in=[]))
        alone = Q(user__isnull=True, team__isnull=True, api_key__isnull=True)
        return tuple(Budget.objects.filter(subject | alone).select_related("team", "model"))

    return _applicable.fetch((user.pk, api_key.pk if api_key else None), load)


def _whose(budget: Budget) -> tuple[str, str]:
    """The counter's subject and how a person names it."""
    on_model = f" on model '{budget.model.name}'" if budget.model is not None else ""
    suffix = f":m{budget.model_id}" if budget.model_id is not None else ""
    if budget.team_id is not None:
        return f"team:{budget.team_id}{suffix}", f"team '{budget.team}' spend{on_model}"
    if budget.api_key_id is not None:
        return f"key:{budget.api_key_id}{suffix}", f"this API key's spend{on_model}"
    if budget.user_id is not None:
        return f"user:{budget.user_id}{suffix}", f"your spend{on_model}"
    return f"all{suffix}", f"everyone's spend{on_model}"


def budget_counter(budget: Budget, *, now: datetime) -> tuple[CounterSpec, float | None]:
    """The budget's counter for the window `now` is in, and when that window ends (None: never)."""
    subject, _ = _whose(budget)
    limit = money_units(budget.amount)
    if budget.period == Budget.Period.TOTAL:
        return CounterSpec(f"spend:total:{subject}:b{budget.pk}", limit, _TOTAL_TTL_SECONDS), None
    window_id, ends = quota_windows(now)[budget.period]
    ttl = int((ends - now).total_seconds()) + GRACE_SECONDS
    return CounterSpec(
        f"spend:{budget.period}:{window_id}:{subject}:b{budget.pk}", limit, ttl
    ), ends.timestamp()


def budget_label(budget: Budget) -> str:
    """`budget 'ml monthly' (team 'ml' spend per month, USD 100.00)`."""
    _, whose = _whose(budget)
    period = {"day": "per day", "month": "per month", "total": "in total"}[budget.period]
    return f"budget '{budget.name}' ({whose} {period}, {money_text(budget.amount)})"


def budget_limits_for(
    *, user: User, api_key: ApiKey | None, model_id: int | None, now: datetime
) -> tuple[Limit, ...]:
    """The limits of every budget on a request of the caller's to `model_id` (None: only those
    not narrowed to a model)."""
    limits = []
    for budget in budgets_applicable(user=user, api_key=api_key):
        if budget.model_id is not None and budget.model_id != model_id:
            continue
        spec, resets_at = budget_counter(budget, now=now)
        limits.append(Limit(spec, budget_label(budget), resets_at))
    return tuple(limits)

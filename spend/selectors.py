"""Reads of spend: reports grouped by day, model, team, user or key, and budgets' standing."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import TruncDate

from accounts.models import ApiKey, Team, UsageRecord, User
from accounts.services.quotas import quota_ledger
from inference.models import ModelVersion
from spend.models import Budget
from spend.money import currency, money_plain, units_money
from spend.plan import budget_counter, budget_label

GROUPINGS = ("day", "model", "team", "user", "key")
_COLUMN = {"day": "day", "model": "model_version_id", "user": "user_id", "key": "api_key_id"}


@dataclass(frozen=True)
class SpendFilter:
    """Which usage a report sums: days `since` to `until` (UTC, both included), and any of one
    user, team (the requester's teams when it ran), API key or model."""

    since: date
    until: date
    user_id: int | None = None
    team_id: int | None = None
    api_key_id: int | None = None
    model_id: int | None = None


@dataclass
class _Totals:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: Decimal = Decimal(0)

    def add(self, row: dict[str, Any]) -> None:
        self.requests += int(row["requests"])
        self.prompt_tokens += int(row["prompt"] or 0)
        self.completion_tokens += int(row["completion"] or 0)
        self.cost += Decimal(row["cost"] or 0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost": money_plain(self.cost),
        }


def _records(filters: SpendFilter) -> "QuerySet[UsageRecord]":
    start = datetime.combine(filters.since, time.min, tzinfo=UTC)
    end = datetime.combine(filters.until + timedelta(days=1), time.min, tzinfo=UTC)
    records = UsageRecord.objects.filter(created_at__gte=start, created_at__lt=end)
    if filters.user_id is not None:
        records = records.filter(user_id=filters.user_id)
    if filters.api_key_id is not None:
        records = records.filter(api_key_id=filters.api_key_id)
    if filters.model_id is not None:
        versions = ModelVersion.objects.filter(model_id=filters.model_id).values("pk")
        records = records.filter(model_version_id__in=versions)
    return records


def spend_report(*, group_by: str, filters: SpendFilter) -> dict[str, Any]:
    """What was spent, in the platform's currency, summed exactly from the usage records.

    Grouped by `group_by` (one of GROUPINGS); a record counts toward each team its requester
    was in when it ran (so team groups can overlap), and toward none when they were in none.
    """
    records = _records(filters)
    if group_by == "day":
        records = records.annotate(day=TruncDate("created_at"))
    needs_teams = group_by == "team" or filters.team_id is not None
    columns = [_COLUMN[group_by]] if group_by != "team" else []
    rows = records.values(*columns, *(["team_ids"] if needs_teams else [])).annotate(
        requests=Count("id"),
        prompt=Sum("prompt_tokens"),
        completion=Sum("completion_tokens"),
        cost=Sum("cost"),
    )
    groups: dict[Any, _Totals] = {}
    total = _Totals()
    for row in rows:
        teams = list(row.get("team_ids") or [])
        if filters.team_id is not None and filters.team_id not in teams:
            continue
        total.add(row)
        keys = (teams or [None]) if group_by == "team" else [row[_COLUMN[group_by]]]
        for key in keys:
            groups.setdefault(key, _Totals()).add(row)
    names = _names(group_by, groups)
    ordered = sorted(
        groups.items(),
        key=lambda item: (item[0] is None, str(item[0]) if group_by == "day" else names.get(item[0], "")),
    )
    return {
        "currency": currency(),
        "group_by": group_by,
        "since": filters.since,
        "until": filters.until,
        "total": total.as_dict(),
        "groups": [
            {
                "group": _shown(group_by, key, names),
                "id": None if group_by == "day" else key,
                **totals.as_dict(),
            }
            for key, totals in ordered
        ],
    }


def _names(group_by: str, groups: Iterable[Any]) -> dict[Any, str]:
    ids = [key for key in groups if key is not None]
    if group_by == "model":
        return {
            pk: f"{name}@{label}"
            for pk, name, label in ModelVersion.objects.filter(pk__in=ids).values_list(
                "pk", "model__name", "label"
            )
        }
    if group_by == "team":
        return dict(Team.objects.filter(pk__in=ids).values_list("pk", "name"))
    if group_by == "user":
        return dict(User.objects.filter(pk__in=ids).values_list("pk", "username"))
    if group_by == "key":
        return {
            pk: f"{name} ({prefix})"
            for pk, name, prefix in ApiKey.objects.filter(pk__in=ids).values_list("pk", "name", "prefix")
        }
    return {}


def _shown(group_by: str, key: Any, names: dict[Any, str]) -> str:
    if group_by == "day":
        return str(key)
    if key is None:
        return {"model": "(no model)", "team": "(no team)", "user": "(no user)", "key": "(no key)"}[group_by]
    return names.get(key, f"(deleted {group_by} {key})")


def budget_standing(*, budgets: Iterable[Budget], now: datetime | None = None) -> list[dict[str, Any]]:
    """Each budget with what its current window has used (running requests' reservations
    included), what is left, and when it resets; amounts as decimal text. Raises
    LedgerUnavailable when the counters cannot be read."""
    now = now or datetime.now(tz=UTC)
    ledger = quota_ledger()
    standing = []
    for budget in budgets:
        spec, resets_at = budget_counter(budget, now=now)
        used = units_money(ledger.used(key=spec.key))
        standing.append(
            {
                "id": budget.pk,
                "name": budget.name,
                "budget": budget_label(budget),
                "user": budget.user.username if budget.user is not None else None,
                "team": budget.team.name if budget.team is not None else None,
                "api_key": budget.api_key_id,
                "period": budget.period,
                "model": budget.model.name if budget.model is not None else None,
                "amount": money_plain(budget.amount),
                "used": money_plain(used),
                "remaining": money_plain(max(Decimal(0), budget.amount - used)),
                "currency": currency(),
                "resets_at": datetime.fromtimestamp(resets_at, tz=UTC) if resets_at is not None else None,
            }
        )
    return standing


def budgets_visible(*, user: User, everyone: bool) -> "QuerySet[Budget]":
    """The budgets a person may list: all where `everyone` (admins, auditors), else those on
    them, their keys and their teams, and those on a model alone."""
    budgets = Budget.objects.select_related("user", "team", "api_key", "model")
    if everyone:
        return budgets
    return budgets.filter(
        Q(user=user)
        | Q(api_key__user=user)
        | Q(team__group__user=user)
        | Q(user__isnull=True, team__isnull=True, api_key__isnull=True)
    ).distinct()

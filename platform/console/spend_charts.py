"""What the dashboard shows of spend: per day by model (the daily rollups) and by team (the
usage records, each counted toward the teams its requester was in), and every budget's use."""

from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.db.models import Sum
from django.db.models.functions import TruncDate

from accounts.models import Team, UsageRecord, UsageRollup
from accounts.quotas.ledger import LedgerUnavailable
from gatehouse.console.selectors import Series, version_model_names, window_days
from spend.models import Budget
from spend.selectors import budget_standing


def spend_by_model_daily(*, now: datetime, days: int) -> Series:
    window = window_days(now, days)
    start = datetime(window[0].year, window[0].month, window[0].day, tzinfo=UTC)
    models = version_model_names()
    position = {day: index for index, day in enumerate(window)}
    lines: dict[str, list[float]] = defaultdict(lambda: [0.0] * len(window))
    rows = (
        UsageRollup.objects.filter(period=UsageRollup.Period.DAY, period_start__gte=start)
        .values("period_start", "model_version_id")
        .annotate(cost=Sum("cost"))
    )
    for row in rows:
        index = position.get(row["period_start"].astimezone(UTC).date())
        if index is not None and row["cost"]:
            lines[models.get(row["model_version_id"] or 0, "unknown")][index] += float(row["cost"])
    return Series([day.isoformat() for day in window], dict(lines))


def spend_by_team_daily(*, now: datetime, days: int) -> Series:
    window = window_days(now, days)
    start = datetime(window[0].year, window[0].month, window[0].day, tzinfo=UTC)
    position = {day: index for index, day in enumerate(window)}
    names = dict(Team.objects.values_list("pk", "name"))
    totals: dict[str, list[Decimal]] = defaultdict(lambda: [Decimal(0)] * len(window))
    rows = (
        UsageRecord.objects.filter(created_at__gte=start)
        .annotate(day=TruncDate("created_at"))
        .values("day", "team_ids")
        .annotate(cost=Sum("cost"))
    )
    for row in rows:
        index = position.get(row["day"])
        if index is None or not row["cost"]:
            continue
        for team_id in row["team_ids"] or []:
            totals[names.get(team_id, f"team {team_id}")][index] += Decimal(row["cost"])
    lines = {name: [float(value) for value in values] for name, values in totals.items()}
    return Series([day.isoformat() for day in window], lines)


def budgets_used() -> list[dict[str, Any]] | None:
    """Every budget with this window's use; None when the counters cannot be read now."""
    try:
        return budget_standing(budgets=Budget.objects.select_related("user", "team", "model"))
    except LedgerUnavailable:
        return None

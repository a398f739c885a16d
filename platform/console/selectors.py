"""What the dashboard shows, read from the usage rollups, raw usage and the models.

The audit chain's status comes from `audit.selectors.audit_chain_status`.

Each function returns plain data (lists, dicts, numbers) that the template renders as a
table and the page's script draws as a chart, so the page works with or without JavaScript.
"""

import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.db.models import Sum

from accounts.models import Team, UsageRecord, UsageRollup, User
from audit.models import AuditEvent
from inference.models import Model, ModelVersion

# Raw rows read for percentiles, at most: the newest ones in the window.
_PERCENTILE_SAMPLE = 50_000


@dataclass
class Series:
    """One chart: a label per x value, and named lines (or stacks) of numbers."""

    labels: list[str]
    # None is a gap (a day without a sample), which Chart.js leaves undrawn.
    lines: Mapping[str, Sequence[float | None]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        # `rows` is the same data turned for a table: one row per label, a column per line.
        rows = [
            {"label": label, "values": [values[index] for values in self.lines.values()]}
            for index, label in enumerate(self.labels)
        ]
        return {"labels": self.labels, "lines": self.lines, "rows": rows}


def window_days(now: datetime, days: int) -> list[date]:
    today = now.astimezone(UTC).date()
    return [today - timedelta(days=back) for back in range(days - 1, -1, -1)]


def version_model_names() -> dict[int, str]:
    return dict(ModelVersion.objects.values_list("pk", "model__name"))


def usage_by_model_daily(*, now: datetime, days: int) -> tuple[Series, Series]:
    """Requests and tokens per day, one line per model, from the daily rollups."""
    window = window_days(now, days)
    start = datetime(window[0].year, window[0].month, window[0].day, tzinfo=UTC)
    models = version_model_names()
    requests: dict[str, list[float]] = defaultdict(lambda: [0.0] * len(window))
    tokens: dict[str, list[float]] = defaultdict(lambda: [0.0] * len(window))
    position = {day: index for index, day in enumerate(window)}
    rows = (
        UsageRollup.objects.filter(period=UsageRollup.Period.DAY, period_start__gte=start)
        .values("period_start", "model_version_id")
        .annotate(requests=Sum("requests"), prompt=Sum("prompt_tokens"), completion=Sum("completion_tokens"))
    )
    for row in rows:
        index = position.get(row["period_start"].astimezone(UTC).date())
        if index is None:
            continue
        name = models.get(row["model_version_id"] or 0, "unknown")
        requests[name][index] += row["requests"]
        tokens[name][index] += (row["prompt"] or 0) + (row["completion"] or 0)
    labels = [day.isoformat() for day in window]
    return Series(labels, dict(requests)), Series(labels, dict(tokens))


def usage_by_person_daily(*, now: datetime, days: int, top: int = 5) -> tuple[Series, Series]:
    """Tokens per day for the `top` users and teams of the window (the rest summed as "others").

    A team's line is its current members' usage: rollups carry the user, not the team, and
    people move between teams, so the chart answers "what does this team use now".
    """
    window = window_days(now, days)
    start = datetime(window[0].year, window[0].month, window[0].day, tzinfo=UTC)
    position = {day: index for index, day in enumerate(window)}
    per_user: dict[int, list[float]] = defaultdict(lambda: [0.0] * len(window))
    for row in (
        UsageRollup.objects.filter(period=UsageRollup.Period.DAY, period_start__gte=start)
        .values("period_start", "user_id")
        .annotate(prompt=Sum("prompt_tokens"), completion=Sum("completion_tokens"))
    ):
        index = position.get(row["period_start"].astimezone(UTC).date())
        if index is not None:
            per_user[row["user_id"]][index] += (row["prompt"] or 0) + (row["completion"] or 0)
    names = dict(User.objects.filter(pk__in=per_user).values_list("pk", "username"))
    labels = [day.isoformat() for day in window]
    users = _top_lines({names.get(pk, f"#{pk} (gone)"): line for pk, line in per_user.items()}, top)
    team_lines: dict[str, list[float]] = {}
    for name, ids in _team_members().items():
        lines = [per_user[member] for member in ids if member in per_user]
        if lines:
            team_lines[name] = [sum(values) for values in zip(*lines, strict=True)]
    return Series(labels, users), Series(labels, _top_lines(team_lines, top))


def _top_lines(lines: dict[str, list[float]], top: int) -> dict[str, list[float]]:
    ranked = sorted(lines.items(), key=lambda item: -sum(item[1]))
    kept = dict(ranked[:top])
    if len(ranked) > top:
        kept["others"] = [sum(values) for values in zip(*(line for _, line in ranked[top:]), strict=True)]
    return kept


def _team_members() -> dict[str, set[int]]:
    """Every team's member ids, in one query (a team with none still gets its empty set)."""
    members: dict[str, set[int]] = {}
    for name, member in Team.objects.values_list("name", "group__user"):
        ids = members.setdefault(name, set())
        if member is not None:
            ids.add(member)
    return members


def usage_top_people(
    *, now: datetime, days: int, limit: int = 10
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Tokens and requests over the window per user (top `limit`) and per team (its members now)."""
    start = now - timedelta(days=days)
    per_user = {
        row["user_id"]: row
        for row in UsageRollup.objects.filter(period=UsageRollup.Period.DAY, period_start__gte=start)
        .values("user_id")
        .annotate(requests=Sum("requests"), prompt=Sum("prompt_tokens"), completion=Sum("completion_tokens"))
    }
    names = dict(User.objects.filter(pk__in=per_user).values_list("pk", "username"))
    users = sorted(
        (
            {
                "name": names.get(user_id, f"#{user_id} (gone)"),
                "requests": row["requests"],
                "tokens": (row["prompt"] or 0) + (row["completion"] or 0),
            }
            for user_id, row in per_user.items()
        ),
        key=lambda entry: -entry["tokens"],
    )[:limit]
    teams = []
    for name, ids in _team_members().items():
        rows = [per_user[member] for member in ids if member in per_user]
        teams.append(
            {
                "name": name,
                "requests": sum(row["requests"] for row in rows),
                "tokens": sum((row["prompt"] or 0) + (row["completion"] or 0) for row in rows),
            }
        )
    return users, sorted(teams, key=lambda entry: -entry["tokens"])[:limit]


def _percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 1)
    return round(statistics.quantiles(values, n=100, method="inclusive")[int(share * 100) - 1], 1)


def latency_percentiles(*, now: datetime, days: int) -> list[dict[str, Any]]:
    """Per model: p50, p95 and p99 of total latency and of time to first token (ms)."""
    models = version_model_names()
    samples: dict[str, tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
    rows = (
        UsageRecord.objects.filter(created_at__gte=now - timedelta(days=days))
        .order_by("-created_at")
        .values_list("model_version_id", "latency_ms", "time_to_first_token_ms")[:_PERCENTILE_SAMPLE]
    )
    for version_id, latency, first_token in rows:
        latencies, firsts = samples[models.get(version_id or 0, "unknown")]
        if latency is not None:
            latencies.append(latency)
        if first_token is not None:
            firsts.append(first_token)
    return [
        {
            "model": name,
            "samples": len(latencies),
            **{f"latency_p{p}": _percentile(latencies, p / 100) for p in (50, 95, 99)},
            **{f"ttft_p{p}": _percentile(firsts, p / 100) for p in (50, 95, 99)},
        }
        for name, (latencies, firsts) in sorted(samples.items())
    ]


def latency_daily(*, now: datetime, days: int) -> Series:
    """p50 and p95 of latency and of time to first token per day, all models (ms)."""
    window = window_days(now, days)
    position = {day: index for index, day in enumerate(window)}
    samples: list[tuple[list[float], list[float]]] = [([], []) for _ in window]
    rows = (
        UsageRecord.objects.filter(created_at__gte=now - timedelta(days=days))
        .order_by("-created_at")
        .values_list("created_at", "latency_ms", "time_to_first_token_ms")[:_PERCENTILE_SAMPLE]
    )
    for created_at, latency, first_token in rows:
        index = position.get(created_at.astimezone(UTC).date())
        if index is None:
            continue
        if latency is not None:
            samples[index][0].append(latency)
        if first_token is not None:
            samples[index][1].append(first_token)
    lines: dict[str, list[float | None]] = {
        "latency p50": [_percentile(latencies, 0.5) for latencies, _ in samples],
        "latency p95": [_percentile(latencies, 0.95) for latencies, _ in samples],
        "first token p50": [_percentile(firsts, 0.5) for _, firsts in samples],
        "first token p95": [_percentile(firsts, 0.95) for _, firsts in samples],
    }
    return Series([day.isoformat() for day in window], lines)


def failures_daily(*, now: datetime, days: int) -> Series:
    """Failed generations (rollups) and quota refusals (the trail) per day."""
    window = window_days(now, days)
    start = datetime(window[0].year, window[0].month, window[0].day, tzinfo=UTC)
    position = {day: index for index, day in enumerate(window)}
    failed = [0.0] * len(window)
    refused = [0.0] * len(window)
    for row in (
        UsageRollup.objects.filter(period=UsageRollup.Period.DAY, period_start__gte=start)
        .values("period_start")
        .annotate(failures=Sum("failures"))
    ):
        index = position.get(row["period_start"].astimezone(UTC).date())
        if index is not None:
            failed[index] += row["failures"] or 0
    quota_refusals = AuditEvent.objects.filter(
        action="inference.refused", occurred_at__gte=start, metadata_json__contains='"code":"quota_exceeded"'
    ).values_list("occurred_at", flat=True)
    for moment in quota_refusals:
        index = position.get(moment.astimezone(UTC).date())
        if index is not None:
            refused[index] += 1
    return Series(
        [day.isoformat() for day in window], {"failed generations": failed, "quota refusals": refused}
    )


def canary_split(*, now: datetime, hours: int = 24) -> list[dict[str, Any]]:
    """For each model with a canary: its configured weight and the share each version served."""
    split = []
    for model in Model.objects.filter(canary_version__isnull=False).select_related("canary_version"):
        served = dict(
            UsageRollup.objects.filter(
                period=UsageRollup.Period.HOUR,
                period_start__gte=now - timedelta(hours=hours),
                model_version_id__in=model.versions.values_list("pk", flat=True),
            )
            .values("model_version_id")
            .annotate(requests=Sum("requests"))
            .values_list("model_version_id", "requests")
        )
        total = sum(served.values()) or 1
        labels = dict(model.versions.values_list("pk", "label"))
        split.append(
            {
                "model": model.name,
                "canary_weight": model.canary_weight,
                "served": {
                    labels.get(pk or 0, str(pk)): round(100 * count / total, 1)
                    for pk, count in served.items()
                },
            }
        )
    return split

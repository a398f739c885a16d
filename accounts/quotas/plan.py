"""Which quota counters a request is held to: every applicable policy's, per window.

Counter keys name the dimension, the window, the subject and the policy, e.g.
`tokens:day:20261121:team:3:p7`, so each window starts from zero with a new key and each
policy counts on its own (two policies on one subject amount to the tighter of the two).
Budgets in money (`spend.plan`) count the same way, on `spend:` counters, per model asked.
"""

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db.models import Q

from accounts.models import ApiKey, QuotaPolicy, User
from accounts.quotas.ledger import CounterSpec
from gatehouse.local_cache import LocalCache

# Counters outlive their window a little, so a late settle still finds them.
GRACE_SECONDS = 3600
# A stream slot is a lease; this only bounds how long an idle counter key lingers.
_STREAMS_TTL_SECONDS = 24 * 3600


@dataclass(frozen=True)
class Limit:
    spec: CounterSpec
    # What the client is told when this limit refuses: "team 'ml' tokens per day".
    label: str
    # When the window starts over (epoch seconds); None for concurrent streams.
    resets_at: float | None


@dataclass(frozen=True)
class QuotaPlan:
    # When the plan was made (epoch seconds): windows and resets are reckoned from it.
    now: float = 0.0
    requests: tuple[Limit, ...] = ()
    tokens: tuple[Limit, ...] = ()
    streams: tuple[Limit, ...] = ()
    # Budgets in money, counted in ledger units (spend.money).
    spend: tuple[Limit, ...] = ()

    def label_of(self, key: str) -> str:
        return next(
            limit.label
            for limit in (*self.requests, *self.tokens, *self.streams, *self.spend)
            if limit.spec.key == key
        )


def _subject(policy: QuotaPolicy, user: User) -> tuple[str, str]:
    """The counter's owner (a role's default counts per user) and how to name it to a person."""
    if policy.team_id is not None:
        return f"team:{policy.team_id}", f"team '{policy.team}'"
    if policy.api_key_id is not None:
        return f"key:{policy.api_key_id}", "this API key's"
    return f"user:{user.pk}", "your"


def quota_windows(now: datetime) -> dict[str, tuple[str, datetime]]:
    """Each window's id and end, in UTC."""
    minute = now.replace(second=0, microsecond=0)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    month = day.replace(day=1)
    days_in_month = calendar.monthrange(month.year, month.month)[1]
    return {
        "minute": (minute.strftime("%Y%m%d%H%M"), minute + timedelta(minutes=1)),
        "day": (day.strftime("%Y%m%d"), day + timedelta(days=1)),
        "month": (month.strftime("%Y%m"), month + timedelta(days=days_in_month)),
    }


def _now() -> datetime:
    return datetime.now(tz=UTC)


# The policies that apply to a caller, per (user, key), held per process and dropped
# everywhere on any change to policies, teams or group membership (gatehouse.local_cache).
_applicable: LocalCache[tuple[int, int | None], tuple[QuotaPolicy, ...]] = LocalCache("quota policies")


def quota_policies_applicable(*, user: User, api_key: ApiKey | None) -> tuple[QuotaPolicy, ...]:
    """Every policy the caller is held to: on the user, their roles, their teams, the key."""

    def load() -> tuple[QuotaPolicy, ...]:
        groups = user.groups.all()
        return tuple(
            QuotaPolicy.objects.filter(
                Q(user=user)
                | Q(role__in=groups)
                | Q(team__group__in=groups)
                | (Q(api_key=api_key) if api_key else Q(pk__in=[]))
            ).select_related("team")
        )

    return _applicable.fetch((user.pk, api_key.pk if api_key else None), load)


def quota_plan_for(
    *, user: User, api_key: ApiKey | None, model_id: int | None = None, now: datetime | None = None
) -> QuotaPlan:
    """Every limit a request of the caller's is held to; with `model_id`, the budgets of the
    model asked for too (spend.plan)."""
    from spend.plan import budget_limits_for

    now = now or _now()
    windows = quota_windows(now)
    applicable = quota_policies_applicable(user=user, api_key=api_key)
    requests: list[Limit] = []
    tokens: list[Limit] = []
    streams: list[Limit] = []
    for policy in applicable:
        subject, whose = _subject(policy, user)
        windowed = (
            (requests, "requests", "minute", policy.requests_per_minute, "requests per minute"),
            (tokens, "tokens", "day", policy.tokens_per_day, "tokens per day"),
            (tokens, "tokens", "month", policy.tokens_per_month, "tokens per month"),
        )
        for bucket, dimension, window, limit, what in windowed:
            if limit is None:
                continue
            window_id, ends = windows[window]
            ttl = int((ends - now).total_seconds()) + GRACE_SECONDS
            key = f"{dimension}:{window}:{window_id}:{subject}:p{policy.pk}"
            bucket.append(Limit(CounterSpec(key, limit, ttl), f"{whose} {what}", ends.timestamp()))
        if policy.concurrent_streams is not None:
            spec = CounterSpec(
                f"streams:{subject}:p{policy.pk}", policy.concurrent_streams, _STREAMS_TTL_SECONDS
            )
            streams.append(Limit(spec, f"{whose} concurrent streams", None))
    return QuotaPlan(
        now=now.timestamp(),
        requests=tuple(requests),
        tokens=tuple(tokens),
        streams=tuple(streams),
        spend=budget_limits_for(user=user, api_key=api_key, model_id=model_id, now=now),
    )

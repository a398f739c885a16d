"""Usage rollups: records summed per hour and day, recomputed so reruns and late records agree."""

from datetime import UTC, datetime

import pytest

from accounts.models import UsageRecord, UsageRollup, User
from accounts.services.usage import usage_rollup, usage_totals
from tests.accounts.helpers import bearer_client, login

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 21, 10, 30, tzinfo=UTC)


def _record(user: User, at: datetime, *, tokens: int, outcome: str = "completed", version: int = 1) -> None:
    UsageRecord.objects.create(
        created_at=at,
        user_id=user.pk,
        model_version_id=version,
        channel="api",
        prompt_tokens=tokens,
        completion_tokens=tokens,
        outcome=outcome,
    )


def test_hourly_rollups_sum_each_group_and_reruns_agree(bob: User) -> None:
    _record(bob, datetime(2026, 11, 21, 9, 5, tzinfo=UTC), tokens=10)
    _record(bob, datetime(2026, 11, 21, 9, 55, tzinfo=UTC), tokens=5, outcome="failed")
    _record(bob, datetime(2026, 11, 21, 10, 1, tzinfo=UTC), tokens=7)
    _record(bob, datetime(2026, 11, 21, 10, 2, tzinfo=UTC), tokens=1, version=2)
    usage_rollup(period="hour", now=NOW)
    usage_rollup(period="hour", now=NOW)  # idempotent
    rows = {(r.period_start.hour, r.model_version_id): r for r in UsageRollup.objects.filter(period="hour")}
    assert set(rows) == {(9, 1), (10, 1), (10, 2)}
    nine = rows[(9, 1)]
    assert (nine.requests, nine.failures, nine.prompt_tokens, nine.completion_tokens) == (2, 1, 15, 15)
    _record(bob, datetime(2026, 11, 21, 9, 59, tzinfo=UTC), tokens=100)  # flushed late
    usage_rollup(period="hour", now=NOW)
    assert UsageRollup.objects.get(period="hour", period_start__hour=9).prompt_tokens == 115


def test_daily_totals_feed_the_usage_endpoint(bob: User, carol: User) -> None:
    today = datetime.now(tz=UTC).replace(minute=0, second=0, microsecond=0)
    _record(bob, today, tokens=20)
    _record(bob, today, tokens=3, outcome="failed")
    _record(carol, today, tokens=999)
    usage_rollup(period="day")
    midnight = today.replace(hour=0)
    assert usage_totals(user_id=bob.pk, since=midnight) == {
        "requests": 2,
        "failures": 1,
        "prompt_tokens": 23,
        "completion_tokens": 23,
    }
    body = bearer_client(login(bob).access).get("/api/usage/").json()
    assert body["today"]["prompt_tokens"] == 23  # carol's usage is hers alone
    assert body["this_month"]["requests"] == 2

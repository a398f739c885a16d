"""Which counters a request is held to: every applicable policy, each in its own window."""

from datetime import UTC, datetime

import pytest

from accounts.models import ApiKey, QuotaPolicy, Team, User
from accounts.quotas.plan import quota_plan_for
from accounts.roles import Role
from accounts.services import api_key_create, team_create, team_member_add
from accounts.services.quotas import reset_text

pytestmark = pytest.mark.django_db

AT_MONTH_END = datetime(2026, 11, 30, 23, 59, 30, tzinfo=UTC)


def test_every_applicable_policy_counts_on_its_own_counter(alice: User, bob: User) -> None:
    team: Team = team_create(name="ml", actor=alice)
    team_member_add(team=team, user=bob, actor=alice)
    key: ApiKey = api_key_create(user=bob, name="k", scopes=["chat"], actor=bob)[0]
    mine = QuotaPolicy.objects.create(name="bob", user=bob, tokens_per_day=1000, requests_per_minute=5)
    shared = QuotaPolicy.objects.create(name="team", team=team, tokens_per_month=50_000)
    keyed = QuotaPolicy.objects.create(name="key", api_key=key, concurrent_streams=2)
    member_default = QuotaPolicy.objects.create(
        name="members", role=bob.groups.get(name=Role.MEMBER.value), tokens_per_day=5000
    )
    QuotaPolicy.objects.create(name="someone else", user=alice, tokens_per_day=1)

    plan = quota_plan_for(user=bob, api_key=key, now=AT_MONTH_END)
    assert {limit.spec.key for limit in plan.tokens} == {
        f"tokens:day:20261130:user:{bob.pk}:p{mine.pk}",
        f"tokens:day:20261130:user:{bob.pk}:p{member_default.pk}",  # a role default counts per user
        f"tokens:month:202611:team:{team.pk}:p{shared.pk}",
    }
    assert [limit.spec.key for limit in plan.requests] == [
        f"requests:minute:202611302359:user:{bob.pk}:p{mine.pk}"
    ]
    assert [limit.spec.key for limit in plan.streams] == [f"streams:key:{key.pk}:p{keyed.pk}"]
    labels = {limit.label for limit in (*plan.tokens, *plan.requests, *plan.streams)}
    assert labels == {
        "your tokens per day",
        "team 'ml' tokens per month",
        "your requests per minute",
        "this API key's concurrent streams",
    }
    # Windows end at the next minute, day and month, all the same instant here.
    assert {limit.resets_at for limit in (*plan.tokens, *plan.requests)} == {
        datetime(2026, 12, 1, tzinfo=UTC).timestamp()
    }
    # Without the key, its policy does not apply.
    assert quota_plan_for(user=bob, api_key=None, now=AT_MONTH_END).streams == ()


def test_reset_times_read_like_openai() -> None:
    assert [reset_text(s) for s in (0, 0.2, 59, 60, 61, 3723)] == [
        "0s",
        "1s",
        "59s",
        "1m0s",
        "1m1s",
        "1h2m3s",
    ]

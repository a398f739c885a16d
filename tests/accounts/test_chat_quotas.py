"""A chat's admission and end in one step each (accounts.services.chat_quotas).

Run in both profiles: one Redis script each way in production, the step-by-step database
ledger on the embedded default; the rules are the same.
"""

import pytest
from django.core.cache import cache

from accounts.models import QuotaPolicy, User
from accounts.quotas.charge import Charge
from accounts.services.chat_quotas import ChatSlot, quota_chat_admit, quota_chat_finish
from accounts.services.quotas import QuotaRefused, quota_standing
from inference.chat_slots import chat_slot_for

pytestmark = pytest.mark.django_db(transaction=True)


def _slot(user: User, limit: int = 2) -> ChatSlot:
    return chat_slot_for(user_id=user.pk, limit=limit)


def _used(user: User, dimension: str) -> list[object]:
    return [row["used"] for row in quota_standing(user=user, api_key=None) if row["dimension"] == dimension]


def _running(user: User) -> int:
    return int(cache.get(f"inference:chats:{user.pk}", 0))


def test_an_admitted_chat_holds_its_slot_stream_and_tokens_until_it_ends(bob: User) -> None:
    QuotaPolicy.objects.create(
        name="all", user=bob, requests_per_minute=10, tokens_per_day=1000, concurrent_streams=2
    )
    hold = quota_chat_admit(user=bob, api_key=None, token_estimate=300, lease_seconds=60, slot=_slot(bob))
    assert _running(bob) == 1
    assert _used(bob, "requests") == [1]
    assert _used(bob, "streams") == [1]
    assert _used(bob, "tokens") == [300]
    assert hold.quota.headers["x-ratelimit-remaining-tokens"] == "700"
    quota_chat_finish(hold=hold, charge=Charge(completion_tokens=42), usage=None)
    assert _running(bob) == 0
    assert _used(bob, "streams") == [0]
    assert _used(bob, "tokens") == [42]
    assert _used(bob, "requests") == [1]


def test_a_chat_over_its_tokens_is_refused_counted_as_a_request_and_holds_nothing(bob: User) -> None:
    QuotaPolicy.objects.create(name="all", user=bob, requests_per_minute=10, tokens_per_day=100)
    with pytest.raises(QuotaRefused) as refused:
        quota_chat_admit(user=bob, api_key=None, token_estimate=300, lease_seconds=60, slot=_slot(bob))
    assert refused.value.code == "quota_exceeded"
    assert refused.value.retry_after is not None
    assert _running(bob) == 0
    assert _used(bob, "tokens") == [0]
    assert _used(bob, "requests") == [1]  # it was made


def test_a_chat_over_the_users_slots_counts_nowhere(bob: User) -> None:
    QuotaPolicy.objects.create(name="rate", user=bob, requests_per_minute=10)
    first = quota_chat_admit(user=bob, api_key=None, token_estimate=10, lease_seconds=60, slot=_slot(bob, 1))
    with pytest.raises(QuotaRefused) as refused:
        quota_chat_admit(user=bob, api_key=None, token_estimate=10, lease_seconds=60, slot=_slot(bob, 1))
    assert refused.value.code == "rate_limited"
    assert "1 chats running" in refused.value.message
    assert _used(bob, "requests") == [1]
    assert _running(bob) == 1
    quota_chat_finish(hold=first, charge=Charge(completion_tokens=0), usage=None)
    assert _running(bob) == 0


def test_the_request_rate_refuses_past_its_limit(bob: User) -> None:
    QuotaPolicy.objects.create(name="rate", user=bob, requests_per_minute=1)
    hold = quota_chat_admit(user=bob, api_key=None, token_estimate=10, lease_seconds=60, slot=_slot(bob))
    quota_chat_finish(hold=hold, charge=Charge(completion_tokens=1), usage=None)
    with pytest.raises(QuotaRefused) as refused:
        quota_chat_admit(user=bob, api_key=None, token_estimate=10, lease_seconds=60, slot=_slot(bob))
    assert refused.value.code == "rate_limited"
    assert _running(bob) == 0

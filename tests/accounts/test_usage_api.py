"""GET /api/usage/: the caller's limits, what is used and left, when they reset."""

import pytest

from accounts.models import QuotaPolicy, User
from accounts.quotas.charge import Charge
from accounts.services import api_key_create
from accounts.services.quotas import quota_admit, quota_settle
from tests.accounts.helpers import bearer_client, login

pytestmark = pytest.mark.django_db


def test_usage_shows_each_limit_with_used_remaining_and_reset(bob: User) -> None:
    QuotaPolicy.objects.create(name="bob", user=bob, tokens_per_day=1000, concurrent_streams=2)
    running = quota_admit(user=bob, api_key=None, token_estimate=300, lease_seconds=60)
    settled = quota_admit(user=bob, api_key=None, token_estimate=300, lease_seconds=60)
    quota_settle(admission=settled, charge=Charge(completion_tokens=120))
    limits = {
        row["limit"]: row for row in bearer_client(login(bob).access).get("/api/usage/").json()["limits"]
    }
    tokens = limits["your tokens per day"]
    # 120 settled plus 300 still reserved by the running request.
    assert (tokens["max"], tokens["used"], tokens["remaining"]) == (1000, 420, 580)
    assert tokens["resets_at"].endswith("T00:00:00Z")
    streams = limits["your concurrent streams"]
    assert (streams["used"], streams["resets_at"]) == (1, None)
    quota_settle(admission=running, charge=Charge(completion_tokens=0))


def test_nobody_with_no_policy_sees_an_empty_list(carol: User) -> None:
    body = bearer_client(login(carol).access).get("/api/usage/").json()
    assert body["limits"] == []
    assert body["today"] == {"requests": 0, "failures": 0, "prompt_tokens": 0, "completion_tokens": 0}


def test_an_api_key_needs_the_usage_scope(bob: User) -> None:
    _, chat_only = api_key_create(user=bob, name="chat", scopes=["chat"], actor=bob)
    _, reader = api_key_create(user=bob, name="usage", scopes=["usage:read"], actor=bob)
    assert bearer_client(chat_only).get("/api/usage/").status_code == 403
    assert bearer_client(reader).get("/api/usage/").status_code == 200

"""Budgets through the API: made and changed under the rules (refusals say what is wrong and
write nothing), audited, and read back with what their window has used."""

from decimal import Decimal
from typing import Any

import pytest
from rest_framework.test import APIClient

from accounts.models import User
from accounts.quotas.charge import Charge
from accounts.quotas.plan import quota_plan_for
from accounts.services import api_key_create
from accounts.services.chat_quotas import quota_chat_admit, quota_chat_finish
from accounts.services.quotas import SpendAsk
from audit.models import AuditEvent
from inference.chat_slots import chat_slot_for
from spend.models import Budget
from spend.money import Prices
from tests.accounts.helpers import bearer_client, login

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def admin(alice: User) -> APIClient:
    return bearer_client(login(alice).access)


def _made(client: APIClient, **body: Any) -> Any:
    return client.post("/api/budgets/", {"name": "b", "period": "day", "amount": "10", **body}, format="json")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"user": "bob", "team": "ml"}, "one user, one team or one API key"),
        ({}, "Say whose spend the budget caps"),
        ({"user": "nobody"}, "No user 'nobody'"),
        ({"model": "nothing"}, "No model 'nothing'"),
        ({"user": "bob", "amount": "0"}, "amount"),
        ({"user": "bob", "amount": "100000001"}, "amount"),
        ({"user": "bob", "period": "week"}, "period"),
    ],
)
def test_a_budget_that_breaks_a_rule_is_refused_and_nothing_is_written(
    admin: APIClient, bob: User, body: dict[str, str], expected: str
) -> None:
    from accounts.services import team_create

    team_create(name="ml", actor=User.objects.get(username="alice"))
    answer = _made(admin, **body)
    assert answer.status_code == 400
    assert expected in str(answer.json())
    assert not Budget.objects.exists()
    assert not AuditEvent.objects.filter(action__startswith="budget.").exists()


def test_a_change_is_audited_with_before_and_after_and_only_name_and_amount_change(
    admin: APIClient, bob: User
) -> None:
    made = _made(admin, user="bob").json()
    assert (made["budget"], made["used"], made["remaining"], made["currency"]) == (
        "budget 'b' (your spend per day, USD 10.00)",
        "0.00",
        "10.00",
        "USD",
    )
    assert admin.patch(f"/api/budgets/{made['id']}/", {"period": "total"}, format="json").status_code == 400
    changed = admin.patch(f"/api/budgets/{made['id']}/", {"amount": "12.5"}, format="json")
    assert changed.status_code == 200
    event = AuditEvent.objects.get(action="budget.changed")
    assert (event.metadata["before"]["amount"], event.metadata["after"]["amount"]) == ("10.0000", "12.5000")
    assert admin.delete(f"/api/budgets/{made['id']}/").status_code == 204
    assert AuditEvent.objects.filter(action="budget.deleted").count() == 1


def test_a_key_cannot_write_budgets_even_its_own(bob: User) -> None:
    key, raw = api_key_create(user=bob, name="k", scopes=["chat", "usage:read"], actor=bob)
    client = bearer_client(raw)
    answer = client.post(
        "/api/budgets/", {"name": "k", "api_key": key.pk, "period": "day", "amount": "1"}, format="json"
    )
    assert answer.status_code == 403
    assert client.get("/api/budgets/").status_code == 200


def test_a_budget_shows_what_running_and_finished_chats_used(
    alice: User, bob: User, admin: APIClient
) -> None:
    made = _made(admin, user="bob", amount="1").json()
    prices = Prices(input_per_million=Decimal(1000), output_per_million=Decimal(2000))
    plan = quota_plan_for(user=bob, api_key=None)
    finished = quota_chat_admit(
        user=bob,
        api_key=None,
        token_estimate=300,
        lease_seconds=60,
        slot=chat_slot_for(user_id=bob.pk, limit=8),
        plan=plan,
        spend=SpendAsk(units=prices.cost_units(prompt_tokens=100, completion_tokens=200), prices=prices),
    )
    # Reserved 0.5 (100 prompt and 200 answer tokens at most); it used 100 and 50: 0.2.
    quota_chat_finish(hold=finished, charge=Charge(prompt_tokens=100, completion_tokens=50), usage=None)
    quota_chat_admit(
        user=bob,
        api_key=None,
        token_estimate=300,
        lease_seconds=60,
        slot=chat_slot_for(user_id=bob.pk, limit=8),
        plan=plan,
        spend=SpendAsk(units=prices.cost_units(prompt_tokens=100, completion_tokens=200), prices=prices),
    )  # still running: its 0.5 is held
    standing = bearer_client(login(bob).access).get(f"/api/budgets/{made['id']}/").json()
    assert (standing["used"], standing["remaining"]) == ("0.70", "0.30")


def test_a_members_budget_names_only_their_own_keys_and_models(alice: User, bob: User) -> None:
    from inference.services import model_register

    model_register(name="hidden", actor=alice)
    alices_key, _ = api_key_create(user=alice, name="a", scopes=["chat"], actor=alice)
    bobs_key, _ = api_key_create(user=bob, name="b", scopes=["chat"], actor=bob)
    client = bearer_client(login(bob).access)
    for body, field in (
        ({"api_key": alices_key.pk}, "api_key"),
        ({"api_key": bobs_key.pk, "model": "hidden"}, "model"),
    ):
        answer = _made(client, **body)
        assert answer.status_code == 400
        assert field in answer.json()
    assert _made(client, user="alice").status_code == 403  # refused before the name is looked up
    assert _made(client, user="nobody").status_code == 403
    assert not Budget.objects.exists()

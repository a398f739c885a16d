"""A budget admits exactly what fits, however many chats ask at once: on the database ledger
(SQLite embedded, PostgreSQL in production) and on Redis (production's chat script)."""

from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.db import close_old_connections

from accounts.models import User
from accounts.quotas.charge import Charge
from accounts.quotas.plan import quota_plan_for
from accounts.quotas.sql_ledger import SqlQuotaLedger
from accounts.services import quotas as quota_services
from accounts.services.chat_quotas import ChatHold, quota_chat_admit, quota_chat_finish
from accounts.services.quotas import QuotaRefused, SpendAsk
from inference.chat_slots import chat_slot_for
from spend import selectors as spend_selectors
from spend.models import Budget
from spend.money import Prices
from spend.selectors import budget_standing
from spend.services import budget_save
from tests.profile import PRODUCTION

pytestmark = pytest.mark.django_db(transaction=True)

# Each chat may cost at most 0.01 (100 prompt and 100 answer tokens at 40 and 60 per million).
PRICES = Prices(input_per_million=Decimal(40), output_per_million=Decimal(60))
MOST = SpendAsk(units=PRICES.cost_units(prompt_tokens=100, completion_tokens=100), prices=PRICES)


@pytest.fixture(params=["database", "redis"] if PRODUCTION else ["database"])
def ledger(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "database":
        monkeypatch.setattr(quota_services, "quota_ledger", SqlQuotaLedger)
        monkeypatch.setattr(spend_selectors, "quota_ledger", SqlQuotaLedger)
    return str(request.param)


def test_two_hundred_chats_at_once_on_a_budget_for_one_hundred_admit_exactly_one_hundred(
    ledger: str, alice: User, bob: User
) -> None:
    budget = budget_save(
        budget=Budget(name="one dollar", user=bob, period=Budget.Period.DAY, amount=Decimal(1)), actor=alice
    )
    plan = quota_plan_for(user=bob, api_key=None)
    assert [limit.label for limit in plan.spend] == ["budget 'one dollar' (your spend per day, USD 1.00)"]

    def attempt(_: int) -> ChatHold | None:
        try:
            return quota_chat_admit(
                user=bob,
                api_key=None,
                token_estimate=200,
                lease_seconds=60,
                slot=chat_slot_for(user_id=bob.pk, limit=1000),
                plan=plan,
                spend=MOST,
            )
        except QuotaRefused as refused:
            assert refused.code == "quota_exceeded"  # noqa: PT017 - each refusal, in its thread
            return None
        finally:
            close_old_connections()

    with ThreadPoolExecutor(max_workers=20) as pool:
        holds = [hold for hold in pool.map(attempt, range(200)) if hold is not None]
    assert len(holds) == 100
    assert budget_standing(budgets=[budget])[0]["used"] == "1.00"

    # Each used half of what it could: 50 prompt and 50 answer tokens, 0.005.
    for hold in holds:
        quota_chat_finish(hold=hold, charge=Charge(prompt_tokens=50, completion_tokens=50), usage=None)
    assert budget_standing(budgets=[budget])[0]["used"] == "0.50"

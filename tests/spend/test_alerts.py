"""Spend alerts: at 80% and 100% of a budget and on a team's spike, each raised once, posted
signed to a receiver on loopback (tried again after a 500), logged, and mailed to the owner."""

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.core.exceptions import ValidationError

from accounts.models import UsageRecord, User
from accounts.quotas.plan import quota_plan_for
from accounts.services import team_create, team_member_add
from accounts.services.chat_quotas import quota_chat_admit
from accounts.services.quotas import SpendAsk
from audit.models import AuditEvent
from inference.chat_slots import chat_slot_for
from spend.alerts import spend_alerts_check, webhook_delivery_send
from spend.models import AlertWebhook, Budget, SpendAlert, WebhookDelivery
from spend.money import Prices
from spend.services import alert_webhook_save, budget_save
from tests.conftest import WEBHOOK_SECRET, WEBHOOK_SECRET_NAME
from tests.spend.receiver import Receiver, webhook_receiver

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("inference_backend")]

PRICES = Prices(input_per_million=Decimal(1000), output_per_million=Decimal(1000))


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch, alice: User) -> Iterator[Receiver]:
    monkeypatch.setenv(WEBHOOK_SECRET_NAME, WEBHOOK_SECRET)
    with webhook_receiver() as receiving:
        alert_webhook_save(
            webhook=AlertWebhook(name="ops", url=receiving.url, secret_ref=WEBHOOK_SECRET_NAME), actor=alice
        )
        yield receiving


def _spend(user: User, amount: str) -> None:
    """Hold `amount` of the user's budgets (a running chat's reservation)."""
    tokens = int(Decimal(amount) * 1000)  # at 1000 per million tokens
    quota_chat_admit(
        user=user,
        api_key=None,
        token_estimate=tokens,
        lease_seconds=600,
        slot=chat_slot_for(user_id=user.pk, limit=100),
        plan=quota_plan_for(user=user, api_key=None),
        spend=SpendAsk(units=PRICES.cost_units(prompt_tokens=tokens, completion_tokens=0), prices=PRICES),
    )


def _signed_right(headers: dict[str, str], body: bytes) -> bool:
    fields = dict(part.split("=", 1) for part in headers["X-Gatehouse-Signature"].split(","))
    expected = hmac.new(
        WEBHOOK_SECRET.encode(), fields["t"].encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(fields["v1"], expected)


def _delivered(count: int) -> list[WebhookDelivery]:
    """The deliveries, once `count` have finished (on a worker in production: its retries wait)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        deliveries = list(WebhookDelivery.objects.order_by("id"))
        if sum(item.status != WebhookDelivery.Status.PENDING for item in deliveries) >= count:
            return deliveries
        time.sleep(0.1)
    raise AssertionError(f"{count} deliveries did not finish within 30 s")


def test_a_budget_alerts_once_at_80_and_once_at_100_signed_and_retried_after_a_500(
    receiver: Receiver, alice: User, bob: User
) -> None:
    budget_save(budget=Budget(name="bob daily", user=bob, period="day", amount=Decimal(1)), actor=alice)
    receiver.statuses = [500, 200]
    _spend(bob, "0.5")
    assert spend_alerts_check() == []
    _spend(bob, "0.35")
    (alert,) = spend_alerts_check()
    assert alert.kind == SpendAlert.Kind.BUDGET_80
    (delivery,) = _delivered(1)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 2, 200)
    assert len(receiver.posts) == 2  # the 500, then the try that succeeded
    headers, body = receiver.posts[-1]
    assert _signed_right(headers, body)
    assert headers["X-Gatehouse-Delivery"] == str(delivery.pk)
    sent = json.loads(body)
    assert (sent["type"], sent["threshold_percent"], sent["used"], sent["amount"]) == (
        "spend.budget_80",
        80,
        "0.85",
        "1.00",
    )
    (email,) = mail.outbox
    assert email.to == ["bob@example.com"]
    assert email.subject == "80% of budget 'bob daily' (your spend per day, USD 1.00) is used"

    assert spend_alerts_check() == []  # never twice for one threshold
    _spend(bob, "0.15")
    (used_up,) = spend_alerts_check()
    assert used_up.kind == SpendAlert.Kind.BUDGET_100
    _delivered(2)
    assert spend_alerts_check() == []
    assert len(receiver.posts) == 3
    assert SpendAlert.objects.count() == 2


def test_a_tampered_body_fails_the_signature(receiver: Receiver, alice: User, bob: User) -> None:
    budget_save(budget=Budget(name="b", user=bob, period="month", amount=Decimal(1)), actor=alice)
    _spend(bob, "1")
    spend_alerts_check()
    _delivered(1)
    headers, body = receiver.posts[0]
    assert _signed_right(headers, body)
    assert not _signed_right(headers, body.replace(b"1.00", b"9.00"))


def test_a_team_whose_day_jumps_past_three_times_its_average_is_alerted_once(
    receiver: Receiver, alice: User, bob: User
) -> None:
    team = team_create(name="ml", actor=alice)
    team_member_add(team=team, user=bob, actor=alice)
    now = datetime.now(tz=UTC)
    for days_ago, cost in [(day, "1") for day in range(1, 8)] + [(0, "3.5")]:
        UsageRecord.objects.create(
            created_at=now - timedelta(days=days_ago),
            user_id=bob.pk,
            team_ids=[team.pk],
            channel="api",
            cost=Decimal(cost),
            outcome="completed",
        )
    (spike,) = spend_alerts_check(now=now)
    assert (spike.kind, spike.payload["today"], spike.payload["daily_average"]) == (
        "team_spike",
        "3.50",
        "1.00",
    )
    assert spend_alerts_check(now=now) == []
    _delivered(1)
    assert json.loads(receiver.posts[0][1])["team"] == {"id": team.pk, "name": "ml"}
    assert [email.to for email in mail.outbox] == [["alice@example.com"]]


def test_a_webhook_must_pass_the_outbound_guard_and_name_an_allowed_key(alice: User) -> None:
    for url, secret_ref, field in [
        ("http://169.254.169.254/latest", WEBHOOK_SECRET_NAME, "url"),
        ("http://127.0.0.1:9/hooks", "SECRET_KEY", "secret_ref"),
        ("http://127.0.0.1:9/hooks", "GATEHOUSE_WEBHOOK_UNSET", "secret_ref"),
    ]:
        with pytest.raises(ValidationError) as refused:
            alert_webhook_save(webhook=AlertWebhook(name="x", url=url, secret_ref=secret_ref), actor=alice)
        assert field in refused.value.message_dict
    assert not AlertWebhook.objects.exists()
    assert not AuditEvent.objects.filter(action__startswith="alert_webhook.").exists()


def test_a_delivery_to_an_address_refused_later_is_given_up_at_once(
    receiver: Receiver, alice: User, bob: User, settings: object
) -> None:
    budget_save(budget=Budget(name="b", user=bob, period="day", amount=Decimal(1)), actor=alice)
    AlertWebhook.objects.update(url="http://169.254.169.254/latest")
    _spend(bob, "1")
    spend_alerts_check()
    (delivery,) = _delivered(1)
    assert delivery.status == WebhookDelivery.Status.FAILED
    assert "169.254.169.254" in delivery.last_error
    assert receiver.posts == []


def test_the_last_try_gives_a_failing_receiver_up(receiver: Receiver, alice: User, bob: User) -> None:
    receiver.statuses = [503]
    budget = budget_save(budget=Budget(name="b", user=bob, period="day", amount=Decimal(1)), actor=alice)
    alert = SpendAlert.objects.create(kind="budget_100", budget=budget, window="x", payload={"used": "1"})
    delivery = WebhookDelivery.objects.create(alert=alert, webhook=AlertWebhook.objects.get())
    assert webhook_delivery_send(delivery_id=delivery.pk, last_try=True) is False
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_error) == (
        "failed",
        1,
        "the receiver answered 503",
    )

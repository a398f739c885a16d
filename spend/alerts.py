"""Spend alerts: a budget past 80% and past 100% of its window, and a team's day of spend past
GATEHOUSE_SPEND_SPIKE_MULTIPLE times its daily average over the GATEHOUSE_SPEND_SPIKE_DAYS
before. `spend_alerts_check` (Celery beat, every minute) raises each once: a unique row per
budget, kind and window (per team and day for a spike), so it is never sent twice. A raised
alert is posted to every active webhook (signed, retried with backoff, each try in the
delivery log) and mailed to the budget's owner (a spike: to the admins).

A budget's use is its counter's: running chats' reservations count, as they do at admission.
"""

import functools
import hashlib
import hmac
import json
import logging
import time
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Team, User
from accounts.quotas.ledger import LedgerUnavailable
from accounts.quotas.plan import quota_windows
from accounts.roles import Role
from gatehouse.outbound import OutboundUrlRefused, outbound_url_check
from spend.models import AlertWebhook, Budget, SpendAlert, WebhookDelivery
from spend.money import currency, money_plain, money_text
from spend.plan import budget_label
from spend.selectors import SpendFilter, budget_standing, spend_report
from spend.webhook_secrets import WebhookSecretRefused, webhook_secret_read

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Gatehouse-Signature"
DELIVERY_HEADER = "X-Gatehouse-Delivery"
WEBHOOK_TIMEOUT_SECONDS = 5.0
# Tries of one delivery, the first included, before it is given up (the task's backoff spaces them).
WEBHOOK_TRIES = 8
_THRESHOLDS = ((SpendAlert.Kind.BUDGET_100, Decimal(1)), (SpendAlert.Kind.BUDGET_80, Decimal("0.8")))


class WebhookFailed(Exception):
    """A try that may succeed later: the receiver answered other than 2xx, or not at all."""


def spend_alerts_check(*, now: datetime | None = None) -> list[SpendAlert]:
    """Raise the alerts due now (each at most once); returns those raised by this call."""
    now = now or timezone.now()
    raised: list[SpendAlert] = []
    for budget in Budget.objects.select_related("user", "team", "api_key__user", "model"):
        try:
            (standing,) = budget_standing(budgets=[budget], now=now)
        except LedgerUnavailable:
            logger.warning(
                "spend alerts: budget %s cannot be read now; checked again on the next run", budget.pk
            )
            continue
        used = Decimal(standing["used"])
        for kind, share in _THRESHOLDS:
            if used >= budget.amount * share:
                payload = {
                    "budget": {"id": budget.pk, "name": budget.name, "label": budget_label(budget)},
                    "threshold_percent": int(share * 100),
                    "used": money_plain(used),
                    "amount": money_plain(budget.amount),
                    "currency": currency(),
                    "resets_at": standing["resets_at"].isoformat() if standing["resets_at"] else None,
                }
                raised += _raise(kind, budget=budget, window=_window(budget, now), payload=payload)
                break  # past 100%: the 80% alert is not raised after it
    return raised + _team_spikes(now)


def _window(budget: Budget, now: datetime) -> str:
    return "total" if budget.period == Budget.Period.TOTAL else quota_windows(now)[budget.period][0]


def _team_spikes(now: datetime) -> list[SpendAlert]:
    multiple = Decimal(str(settings.GATEHOUSE_SPEND_SPIKE_MULTIPLE))
    days = int(settings.GATEHOUSE_SPEND_SPIKE_DAYS)
    today = now.date()
    spent_today = _team_costs(SpendFilter(since=today, until=today))
    before = _team_costs(SpendFilter(since=today - timedelta(days=days), until=today - timedelta(days=1)))
    raised: list[SpendAlert] = []
    for team_id, cost in spent_today.items():
        average = before.get(team_id, Decimal(0)) / days
        if average > 0 and cost > multiple * average:
            team = Team.objects.filter(pk=team_id).first()
            if team is None:
                continue
            payload = {
                "team": {"id": team.pk, "name": team.name},
                "today": money_plain(cost),
                "daily_average": money_plain(average.quantize(Decimal("0.0000000001"))),
                "multiple": str(multiple),
                "days": days,
                "currency": currency(),
            }
            raised += _raise(SpendAlert.Kind.TEAM_SPIKE, team=team, window=today.isoformat(), payload=payload)
    return raised


def _team_costs(filters: SpendFilter) -> dict[int, Decimal]:
    report = spend_report(group_by="team", filters=filters)
    return {group["id"]: Decimal(group["cost"]) for group in report["groups"] if group["id"] is not None}


def _raise(
    kind: str, *, window: str, payload: dict[str, Any], budget: Budget | None = None, team: Team | None = None
) -> list[SpendAlert]:
    """The alert, raised now: [it], or [] where it was raised before (by any process)."""
    try:
        with transaction.atomic():
            alert = SpendAlert.objects.create(
                kind=kind, budget=budget, team=team, window=window, payload=payload
            )
            deliveries = WebhookDelivery.objects.bulk_create(
                WebhookDelivery(alert=alert, webhook=webhook)
                for webhook in AlertWebhook.objects.filter(active=True)
            )
    except IntegrityError:
        return []
    for delivery in deliveries:
        transaction.on_commit(functools.partial(_deliver_later, delivery.pk))
    _mail(alert)
    return [alert]


def _deliver_later(delivery_id: int) -> None:
    from spend.tasks import webhook_deliver

    webhook_deliver.delay(delivery_id)


def _recipients(alert: SpendAlert) -> list[str]:
    budget = alert.budget
    if budget is not None and budget.user is not None:
        people = [budget.user]
    elif budget is not None and budget.api_key is not None:
        people = [budget.api_key.user]
    elif budget is not None and budget.team is not None:
        people = list(User.objects.filter(groups=budget.team.group, is_active=True))
    else:  # a model's budget, or a team's spike: the platform's admins
        people = list(User.objects.filter(groups__name=Role.ADMIN.value, is_active=True))
    return sorted({person.email for person in people if person.email})


def _mail(alert: SpendAlert) -> None:
    recipients = _recipients(alert)
    if not recipients:
        return
    subject, text = _message(alert)
    try:
        send_mail(subject, text, settings.DEFAULT_FROM_EMAIL, recipients)
    except Exception:
        logger.exception("spend alert %s: the email could not be sent", alert.pk)


def _message(alert: SpendAlert) -> tuple[str, str]:
    payload = alert.payload
    if alert.kind == SpendAlert.Kind.TEAM_SPIKE:
        team = payload["team"]["name"]
        return (
            f"Team '{team}' spent more than {payload['multiple']} times its usual today",
            f"Team '{team}' has spent {currency()} {payload['today']} today, against a daily average of "
            f"{currency()} {payload['daily_average']} over the {payload['days']} days before.",
        )
    label = payload["budget"]["label"]
    used = money_text(Decimal(payload["used"]))
    return (
        f"{payload['threshold_percent']}% of {label} is used",
        f"{used} of {label} is used ({payload['threshold_percent']}% or more)."
        + (f" It resets at {payload['resets_at']}." if payload["resets_at"] else ""),
    )


def webhook_delivery_send(*, delivery_id: int, last_try: bool = False) -> bool:
    """Post a delivery's alert to its webhook, once, signed; True when delivered (or when there
    is nothing left to do). Raises WebhookFailed where a later try may succeed, unless this was
    `last_try` (then it is given up: FAILED). A refused address or an unusable signing key
    gives it up at once: trying again cannot help.

    The body is signed as `X-Gatehouse-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of
    "<t>.<body>">` with the webhook's key; `X-Gatehouse-Delivery` names the delivery, so a
    receiver can drop a repeat (a try whose answer was lost is tried again).
    """
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update().select_related("webhook", "alert").get(pk=delivery_id)
        )
        if delivery.status != WebhookDelivery.Status.PENDING:
            return True
        delivery.attempts += 1
        try:
            status = _post(delivery)
        except (OutboundUrlRefused, WebhookSecretRefused) as refused:
            return _ended(delivery, WebhookDelivery.Status.FAILED, error=str(refused))
        except httpx.HTTPError as error:
            status, delivery.last_error = None, f"{type(error).__name__}: {error}"[:500]
        delivery.last_status_code = status
        if status is not None and 200 <= status < 300:  # noqa: PLR2004 - HTTP's success range
            delivery.delivered_at = timezone.now()
            return _ended(delivery, WebhookDelivery.Status.DELIVERED, error="")
        if status is not None:
            delivery.last_error = f"the receiver answered {status}"
        if last_try:
            return _ended(delivery, WebhookDelivery.Status.FAILED, error=delivery.last_error)
        delivery.save(update_fields=["attempts", "last_status_code", "last_error"])
    raise WebhookFailed(delivery.last_error)


def _ended(delivery: WebhookDelivery, status: str, *, error: str) -> bool:
    delivery.status, delivery.last_error = status, error[:500]
    delivery.save()
    return status == WebhookDelivery.Status.DELIVERED


def _post(delivery: WebhookDelivery) -> int:
    webhook, alert = delivery.webhook, delivery.alert
    outbound_url_check(url=webhook.url)
    key = webhook_secret_read(name=webhook.secret_ref)
    body = json.dumps(
        {
            "id": alert.pk,
            "type": f"spend.{alert.kind}",
            "window": alert.window,
            "created_at": alert.created_at.isoformat(),
            **alert.payload,
        },
        sort_keys=True,
    ).encode()
    stamp = str(int(time.time()))
    signature = hmac.new(key, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: f"t={stamp},v1={signature}",
        DELIVERY_HEADER: str(delivery.pk),
    }
    # Never a redirect: it would lead past the outbound guard.
    response = httpx.post(
        webhook.url, content=body, headers=headers, timeout=WEBHOOK_TIMEOUT_SECONDS, follow_redirects=False
    )
    return response.status_code

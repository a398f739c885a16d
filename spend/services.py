"""Writes for budgets and alert webhooks: each one audited with its actor, before and after
(amounts as text)."""

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from accounts.models import User
from audit.services import audit_event_record
from gatehouse.outbound import OutboundUrlRefused, outbound_url_check
from spend.models import AlertWebhook, Budget
from spend.money import currency
from spend.webhook_secrets import WebhookSecretRefused, webhook_secret_read

_FIELDS = ("name", "user_id", "team_id", "api_key_id", "model_id", "period", "amount")


def _state(budget: Budget) -> dict[str, Any]:
    state = {name: getattr(budget, name) for name in _FIELDS}
    state["amount"] = str(budget.amount)
    state["currency"] = currency()
    return state


@transaction.atomic
def budget_save(*, budget: Budget, actor: User) -> Budget:
    """Create or change a budget (validated: whose spend it caps, a positive amount); audited.
    It applies from the next request. Raises ValidationError; nothing is written then."""
    before = _state(Budget.objects.select_for_update().get(pk=budget.pk)) if budget.pk else None
    budget.full_clean()
    budget.save()
    audit_event_record(
        action="budget.changed" if before else "budget.created",
        actor=actor,
        target=budget,
        metadata={"before": before, "after": _state(budget)},
    )
    return budget


@transaction.atomic
def budget_delete(*, budget: Budget, actor: User) -> None:
    """Remove a budget (what it counted stays in the usage records); audited."""
    audit_event_record(
        action="budget.deleted", actor=actor, target=budget, metadata={"before": _state(budget)}
    )
    budget.delete()


def _webhook_state(webhook: AlertWebhook) -> dict[str, Any]:
    return {
        "name": webhook.name,
        "url": webhook.url,
        "secret_ref": webhook.secret_ref,
        "active": webhook.active,
    }


@transaction.atomic
def alert_webhook_save(*, webhook: AlertWebhook, actor: User) -> AlertWebhook:
    """Create or change a webhook for spend alerts; audited. Raises ValidationError for an
    address the outbound guard refuses or a signing key's name that is not allowed or not set."""
    webhook.full_clean()
    errors: dict[str, str] = {}
    try:
        outbound_url_check(url=webhook.url)
    except OutboundUrlRefused as refused:
        errors["url"] = str(refused)
    try:
        webhook_secret_read(name=webhook.secret_ref)
    except WebhookSecretRefused as refused:
        errors["secret_ref"] = str(refused)
    if errors:
        raise ValidationError(errors)
    before = (
        _webhook_state(AlertWebhook.objects.select_for_update().get(pk=webhook.pk)) if webhook.pk else None
    )
    webhook.save()
    audit_event_record(
        action="alert_webhook.changed" if before else "alert_webhook.created",
        actor=actor,
        target=webhook,
        metadata={"before": before, "after": _webhook_state(webhook)},
    )
    return webhook


@transaction.atomic
def alert_webhook_delete(*, webhook: AlertWebhook, actor: User) -> None:
    audit_event_record(
        action="alert_webhook.deleted",
        actor=actor,
        target=webhook,
        metadata={"before": _webhook_state(webhook)},
    )
    webhook.delete()

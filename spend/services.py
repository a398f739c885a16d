"""Writes for budgets and alert webhooks: each one audited with its actor, before and after
(amounts as text; a webhook's signing key only by the name of where it lives)."""

from typing import Any

from django.core.exceptions import ValidationError

from accounts.models import User
from audit.audited_writes import audited_delete, audited_save
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


def budget_save(*, budget: Budget, actor: User) -> Budget:
    """Create or change a budget (validated: whose spend it caps, a positive amount); audited.
    It applies from the next request. Raises ValidationError; nothing is written then."""
    return audited_save(instance=budget, actor=actor, action="budget", state=_state)


def budget_delete(*, budget: Budget, actor: User) -> None:
    """Remove a budget (what it counted stays in the usage records); audited."""
    audited_delete(instance=budget, actor=actor, action="budget", state=_state)


def _webhook_state(webhook: AlertWebhook) -> dict[str, Any]:
    return {
        "name": webhook.name,
        "url": webhook.url,
        "secret_ref": webhook.secret_ref,
        "active": webhook.active,
    }


def alert_webhook_save(*, webhook: AlertWebhook, actor: User) -> AlertWebhook:
    """Create or change a webhook for spend alerts; audited. Raises ValidationError for an
    address the outbound guard refuses or a signing key's name that is not allowed or not set."""
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
    return audited_save(instance=webhook, actor=actor, action="alert_webhook", state=_webhook_state)


def alert_webhook_delete(*, webhook: AlertWebhook, actor: User) -> None:
    audited_delete(instance=webhook, actor=actor, action="alert_webhook", state=_webhook_state)

"""Budgets on the console; every change is audited with before and after (spend.services)."""

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.authentication import console_user
from accounts.quotas.ledger import LedgerUnavailable
from spend.models import AlertWebhook, Budget, SpendAlert, WebhookDelivery
from spend.selectors import budget_standing
from spend.services import alert_webhook_delete, alert_webhook_save, budget_delete, budget_save


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin[Budget]):
    # The fields the form edits, each listed.
    fields = ("name", "user", "team", "api_key", "model", "period", "amount")
    list_display = ("name", "user", "team", "api_key", "model", "period", "amount", "used_now")
    list_filter = ("period", "team", "model")
    search_fields = ("name", "user__username", "team__name", "model__name")
    autocomplete_fields = ("user",)

    @admin.display(description="Used this period")
    def used_now(self, budget: Budget) -> str:
        try:
            (standing,) = budget_standing(budgets=[budget])
        except LedgerUnavailable:
            return "unknown (the quota store is away)"
        return f"{standing['used']} of {standing['amount']} {standing['currency']}"

    def save_model(self, request: HttpRequest, obj: Budget, form: Any, change: bool) -> None:
        budget_save(budget=obj, actor=console_user(request))

    def delete_model(self, request: HttpRequest, obj: Budget) -> None:
        budget_delete(budget=obj, actor=console_user(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Budget]) -> None:
        for budget in queryset:
            budget_delete(budget=budget, actor=console_user(request))


@admin.register(AlertWebhook)
class AlertWebhookAdmin(admin.ModelAdmin[AlertWebhook]):
    """Where spend alerts are posted; every change audited (spend.services)."""

    fields = ("name", "url", "secret_ref", "active")
    list_display = ("name", "url", "secret_ref", "active", "created_at")

    def save_model(self, request: HttpRequest, obj: AlertWebhook, form: Any, change: bool) -> None:
        alert_webhook_save(webhook=obj, actor=console_user(request))

    def delete_model(self, request: HttpRequest, obj: AlertWebhook) -> None:
        alert_webhook_delete(webhook=obj, actor=console_user(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[AlertWebhook]) -> None:
        for webhook in queryset:
            alert_webhook_delete(webhook=webhook, actor=console_user(request))


class _ReadOnlyAdmin(admin.ModelAdmin[Any]):
    """A log: seen, never written, from the console."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(SpendAlert)
class SpendAlertAdmin(_ReadOnlyAdmin):
    list_display = ("kind", "budget", "team", "window", "created_at")
    list_filter = ("kind",)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(_ReadOnlyAdmin):
    """The delivery log: each alert's posting to each webhook, its tries and their outcome."""

    list_display = (
        "alert",
        "webhook",
        "status",
        "attempts",
        "last_status_code",
        "last_error",
        "delivered_at",
    )
    list_filter = ("status", "webhook")

"""Budgets on the console; every change is audited with before and after (spend.services)."""

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.authentication import console_user
from accounts.quotas.ledger import LedgerUnavailable
from spend.models import Budget
from spend.selectors import budget_standing
from spend.services import budget_delete, budget_save


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

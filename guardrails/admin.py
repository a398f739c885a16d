"""Guardrail policies on the console; every change is audited (guardrails.services)."""

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.authentication import console_user
from guardrails.models import GuardrailPolicy
from guardrails.services import guardrail_policy_delete, guardrail_policy_save


@admin.register(GuardrailPolicy)
class GuardrailPolicyAdmin(admin.ModelAdmin[GuardrailPolicy]):
    # The fields the form edits, each listed.
    fields = (
        "name",
        "model",
        "team",
        "pii",
        "deny_terms",
        "deny_patterns",
        "max_prompt_chars",
        "check_output",
    )
    list_display = ("name", "model", "team", "max_prompt_chars", "check_output", "updated_at")
    list_filter = ("model", "team", "check_output")
    search_fields = ("name", "model__name", "team__name")

    def save_model(self, request: HttpRequest, obj: GuardrailPolicy, form: Any, change: bool) -> None:
        guardrail_policy_save(policy=obj, actor=console_user(request))

    def delete_model(self, request: HttpRequest, obj: GuardrailPolicy) -> None:
        guardrail_policy_delete(policy=obj, actor=console_user(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[GuardrailPolicy]) -> None:
        for policy in queryset:
            guardrail_policy_delete(policy=policy, actor=console_user(request))

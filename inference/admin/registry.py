"""The console's model and version pages. Every change goes through the services (audited)."""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.widgets import FilteredSelectMultiple
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from guardian.shortcuts import get_groups_with_perms, get_users_with_perms

from accounts.authentication import console_user
from accounts.models import Team, User
from inference.admin.actions import apply_each, canary_start_view
from inference.models import Model, ModelVersion
from inference.services import (
    model_access_grant,
    model_access_revoke,
    model_canary_stop,
    model_version_canary_start,
    model_version_promote,
    model_version_retire,
    model_version_rollback,
    model_version_stage,
)


class ModelVersionInline(admin.TabularInline[ModelVersion, Model]):
    model = ModelVersion
    extra = 0
    fields = ("label", "backend", "status", "dtype", "context_length", "created_at")
    readonly_fields = fields
    can_delete = False
    show_change_link = True


def _granted_users(model: Model) -> set[User]:
    users = get_users_with_perms(model, only_with_perms_in=["use_model"], with_group_users=False)
    return set(users)


def _granted_teams(model: Model) -> set[Team]:
    perms_by_group: Any = get_groups_with_perms(model, attach_perms=True)
    granted = [group for group, perms in perms_by_group.items() if "use_model" in perms]
    return set(Team.objects.filter(group__in=granted))


class ModelForm(forms.ModelForm):  # type: ignore[type-arg]
    users_with_access = forms.ModelMultipleChoiceField(
        queryset=User.objects.filter(is_active=True).order_by("username"),
        required=False,
        widget=FilteredSelectMultiple("users", is_stacked=False),
        help_text="Users who may use this model (besides everyone, if it is open to all).",
    )
    teams_with_access = forms.ModelMultipleChoiceField(
        queryset=Team.objects.order_by("name"),
        required=False,
        widget=FilteredSelectMultiple("teams", is_stacked=False),
    )

    canary = forms.ModelChoiceField(
        queryset=ModelVersion.objects.none(),
        required=False,
        help_text="A staging version to try on a share of conversations; empty stops the canary.",
    )
    canary_percent = forms.IntegerField(min_value=1, max_value=99, required=False)

    class Meta:
        model = Model
        fields = [
            "name",
            "description",
            "open_to_all",
            "max_tokens_cap",
            "default_max_tokens",
            "wall_clock_limit_seconds",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["users_with_access"].initial = list(_granted_users(self.instance))
            self.fields["teams_with_access"].initial = list(_granted_teams(self.instance))
            canary_field: forms.ModelChoiceField = self.fields["canary"]  # type: ignore[assignment,type-arg]
            canary_field.queryset = self.instance.versions.filter(status=ModelVersion.Status.STAGING)
            self.fields["canary"].initial = self.instance.canary_version
            self.fields["canary_percent"].initial = self.instance.canary_weight or None

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        if cleaned.get("canary") and not cleaned.get("canary_percent"):
            self.add_error("canary_percent", "Give the share of conversations the canary gets.")
        return cleaned


@admin.register(Model)
class ModelAdmin(admin.ModelAdmin[Model]):
    form = ModelForm
    list_display = ("name", "open_to_all", "max_tokens_cap", "updated_at")
    search_fields = ("name", "description")
    inlines = [ModelVersionInline]
    actions = ["roll_back", "stop_canary"]

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        actor = console_user(request)
        model: Model = form.instance
        wanted: set[User | Team] = set(form.cleaned_data["users_with_access"]) | set(
            form.cleaned_data["teams_with_access"]
        )
        current: set[User | Team] = _granted_users(model) | _granted_teams(model)
        for grantee in wanted - current:
            model_access_grant(model=model, grantee=grantee, actor=actor)
        for grantee in current - wanted:
            model_access_revoke(model=model, grantee=grantee, actor=actor)
        self._canary_update(
            request, model, form.cleaned_data.get("canary"), form.cleaned_data.get("canary_percent")
        )

    def _canary_update(
        self, request: HttpRequest, model: Model, canary: ModelVersion | None, percent: int | None
    ) -> None:
        model.refresh_from_db()
        if canary is None:
            if model.canary_version_id is not None:
                model_canary_stop(model=model, actor=console_user(request))
        elif canary.pk != model.canary_version_id or percent != model.canary_weight:
            try:
                model_version_canary_start(version=canary, weight=percent or 0, actor=console_user(request))
            except ValidationError as refused:
                self.message_user(request, " ".join(refused.messages), level=messages.ERROR)

    @admin.action(description="Roll back to the previous production version")
    def roll_back(self, request: HttpRequest, queryset: QuerySet[Model]) -> None:
        apply_each(
            self,
            request,
            queryset,
            lambda model: model_version_rollback(model=model, actor=console_user(request)),
            "Rolled back",
        )

    @admin.action(description="Stop the canary")
    def stop_canary(self, request: HttpRequest, queryset: QuerySet[Model]) -> None:
        apply_each(
            self,
            request,
            queryset,
            lambda model: model_canary_stop(model=model, actor=console_user(request)),
            "Canary stopped",
        )


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin[ModelVersion]):
    list_display = ("__str__", "backend", "status", "dtype", "promoted_at", "created_at")
    list_filter = ("status", "backend")
    # Status changes go through the actions below (services, audited); the manifest is set at
    # registration and the credential is a reference to a secret, never the secret.
    # Hub origin is recorded at registration: the files are what the manifest says, not the hub.
    readonly_fields = (
        "status",
        "manifest",
        "hub_repo",
        "hub_revision",
        "created_by",
        "created_at",
        "promoted_at",
        "retired_at",
    )
    actions = ["stage", "promote", "start_canary", "retire"]

    @admin.action(description="Stage (draft → staging)")
    def stage(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        apply_each(
            self,
            request,
            queryset,
            lambda v: model_version_stage(version=v, actor=console_user(request)),
            "Staged",
        )

    @admin.action(description="Promote to production")
    def promote(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        apply_each(
            self,
            request,
            queryset,
            lambda v: model_version_promote(version=v, actor=console_user(request)),
            "Promoted",
        )

    @admin.action(description="Start a canary beside production…")
    def start_canary(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> TemplateResponse | None:
        return canary_start_view(self, request, queryset)

    @admin.action(description="Retire")
    def retire(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        apply_each(
            self,
            request,
            queryset,
            lambda v: model_version_retire(version=v, actor=console_user(request)),
            "Retired",
        )

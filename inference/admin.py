"""The console's model registry pages. Access grants go through the services (audited)."""

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.widgets import FilteredSelectMultiple
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from guardian.shortcuts import get_groups_with_perms, get_users_with_perms

from accounts.models import Team, User
from inference.models import Model, ModelVersion
from inference.services import model_access_grant, model_access_revoke


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

    class Meta:
        model = Model
        fields = ["name", "description", "open_to_all", "max_tokens_cap"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["users_with_access"].initial = list(_granted_users(self.instance))
            self.fields["teams_with_access"].initial = list(_granted_teams(self.instance))


@admin.register(Model)
class ModelAdmin(admin.ModelAdmin[Model]):
    form = ModelForm
    list_display = ("name", "open_to_all", "max_tokens_cap", "updated_at")
    search_fields = ("name", "description")
    inlines = [ModelVersionInline]

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        if not isinstance(request.user, User):
            raise PermissionDenied
        model: Model = form.instance
        wanted: set[User | Team] = set(form.cleaned_data["users_with_access"]) | set(
            form.cleaned_data["teams_with_access"]
        )
        current: set[User | Team] = _granted_users(model) | _granted_teams(model)
        for grantee in wanted - current:
            model_access_grant(model=model, grantee=grantee, actor=request.user)
        for grantee in current - wanted:
            model_access_revoke(model=model, grantee=grantee, actor=request.user)


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin[ModelVersion]):
    list_display = ("__str__", "backend", "status", "dtype", "created_at")
    list_filter = ("status", "backend")
    # Status changes go through services (audited); the manifest is set at registration.
    readonly_fields = ("status", "manifest", "created_by", "created_at")

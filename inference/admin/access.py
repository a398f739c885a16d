"""Who may use which model, as lists: every person's and every team's grant, with revoke.

The rows are guardian's object permissions (`use_model` on one model). Grants and revokes go
through `inference.services` (audited), never through the rows, and a grant is never edited:
revoke it and grant another. The model's own page edits the same grants one model at a time.
Rights follow the model pages': seeing models lets one see grants, changing them lets one
grant and revoke.
"""

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.contenttypes.models import ContentType
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.authentication import console_user
from accounts.models import Team, User
from inference.models import Model, PersonModelGrant, TeamModelGrant
from inference.selectors import USE_MODEL
from inference.services import model_access_grant, model_access_revoke

_CODENAME = USE_MODEL.split(".")[1]


def _use_model_rows(queryset: QuerySet[Any]) -> QuerySet[Any]:
    return queryset.filter(
        permission__codename=_CODENAME, content_type=ContentType.objects.get_for_model(Model)
    ).prefetch_related("content_object")


class ModelFilter(admin.SimpleListFilter):
    title = "model"
    parameter_name = "model"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(str(pk), name) for pk, name in Model.objects.values_list("pk", "name")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(object_pk=self.value()) if self.value() else queryset


class _GrantForm(forms.ModelForm):  # type: ignore[type-arg]
    model = forms.ModelChoiceField(queryset=Model.objects.order_by("name"))
    grantee_field = ""

    class Meta:
        fields: list[str] = []

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        model, grantee = cleaned.get("model"), cleaned.get(self.grantee_field)
        if model is not None and grantee is not None and self.already_granted(model, grantee):
            raise forms.ValidationError(f"{grantee} may already use {model}.", code="already_granted")
        return cleaned

    def already_granted(self, model: Model, grantee: Any) -> bool:
        raise NotImplementedError


class PersonGrantForm(_GrantForm):
    user = forms.ModelChoiceField(queryset=User.objects.filter(is_active=True).order_by("username"))
    grantee_field = "user"

    class Meta(_GrantForm.Meta):
        model = PersonModelGrant

    def already_granted(self, model: Model, grantee: User) -> bool:
        return _use_model_rows(
            PersonModelGrant.objects.filter(user=grantee, object_pk=str(model.pk))
        ).exists()


class TeamGrantForm(_GrantForm):
    team = forms.ModelChoiceField(queryset=Team.objects.order_by("name"))
    grantee_field = "team"

    class Meta(_GrantForm.Meta):
        model = TeamModelGrant

    def already_granted(self, model: Model, grantee: Team) -> bool:
        rows = TeamModelGrant.objects.filter(group=grantee.group, object_pk=str(model.pk))
        return _use_model_rows(rows).exists()


class _GrantAdmin(admin.ModelAdmin[Any]):
    list_filter = (ModelFilter,)
    actions = ["revoke"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return _use_model_rows(super().get_queryset(request))

    @admin.display(description="model")
    def model_name(self, grant: Any) -> str:
        return str(grant.content_object)

    def grantee(self, grant: Any) -> User | Team:
        raise NotImplementedError

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.has_perm("inference.view_model"))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("inference.change_model"))

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.has_perm("inference.change_model"))

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a grant is revoked and granted again, never edited

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    def get_actions(self, request: HttpRequest) -> Any:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # "revoke" says what it does and goes through the service
        if not self.has_delete_permission(request):
            actions.pop("revoke", None)
        return actions

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        model = form.cleaned_data["model"]
        grantee = form.cleaned_data[form.grantee_field]
        model_access_grant(model=model, grantee=grantee, actor=console_user(request))
        # Become the row the service wrote, so that the console's "added" message links to it.
        row = self.get_queryset(request).get(**self._row_filter(grantee), object_pk=str(model.pk))
        for field in row._meta.concrete_fields:
            setattr(obj, field.attname, getattr(row, field.attname))

    def _row_filter(self, grantee: Any) -> dict[str, Any]:
        raise NotImplementedError

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        model_access_revoke(model=obj.content_object, grantee=self.grantee(obj), actor=console_user(request))

    @admin.action(description="Revoke the selected grants", permissions=["delete"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        grants = list(queryset)
        for grant in grants:
            self.delete_model(request, grant)
        self.message_user(request, f"Revoked {len(grants)} grant(s).")


@admin.register(PersonModelGrant)
class PersonModelGrantAdmin(_GrantAdmin):
    form = PersonGrantForm
    list_display = ("model_name", "grantee")
    search_fields = ("user__username",)
    list_select_related = ("user",)

    @admin.display(description="person", ordering="user__username")
    def grantee(self, grant: PersonModelGrant) -> User:
        return grant.user

    def _row_filter(self, grantee: User) -> dict[str, Any]:
        return {"user": grantee}


@admin.register(TeamModelGrant)
class TeamModelGrantAdmin(_GrantAdmin):
    form = TeamGrantForm
    list_display = ("model_name", "grantee")
    search_fields = ("group__team__name",)
    list_select_related = ("group__team",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        # Only teams' groups: role groups hold global permissions, not grants on one model.
        return super().get_queryset(request).filter(group__team__isnull=False)

    @admin.display(description="team", ordering="group__team__name")
    def grantee(self, grant: TeamModelGrant) -> Team:
        return grant.group.team

    def _row_filter(self, grantee: Team) -> dict[str, Any]:
        return {"group": grantee.group}

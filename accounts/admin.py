"""The console's identity pages. Every change goes through `accounts.services`, so it is audited."""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.widgets import FilteredSelectMultiple
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.authentication import console_user
from accounts.models import ApiKey, QuotaPolicy, Team, TwoFactorRolePolicy, User
from accounts.services import (
    api_key_create,
    api_key_revoke,
    group_membership_changes_record,
    team_create,
    team_delete,
    team_member_add,
    team_member_remove,
    user_activate,
    user_deactivate,
)
from accounts.services.quotas import quota_policy_delete, quota_policy_save
from accounts.services.teams import TEAM_GROUP_PREFIX
from accounts.services.two_factor import (
    two_factor_reset,
    two_factor_role_policy_delete,
    two_factor_role_policy_save,
)
from audit.services import audit_event_record


def _group_names(user: User) -> set[str]:
    return set(user.groups.values_list("name", flat=True))


@admin.register(User)
class GatehouseUserAdmin(UserAdmin):  # type: ignore[type-arg]
    list_display = ("username", "email", "is_active", "is_staff", "role_names", "last_login")
    list_filter = ("is_active", "is_staff", "is_superuser", "groups")
    readonly_fields = ("tokens_valid_after", "last_login", "date_joined")
    actions = ["deactivate", "activate", "reset_second_factors"]

    @admin.display(description="Roles and teams")
    def role_names(self, user: User) -> str:
        return ", ".join(sorted(_group_names(user)))

    def save_model(self, request: HttpRequest, obj: User, form: Any, change: bool) -> None:
        # Activation goes through the services: deactivating must also end every session.
        if change and "is_active" in form.changed_data:
            wanted = obj.is_active
            obj.is_active = not wanted
            super().save_model(request, obj, form, change)
            service = user_activate if wanted else user_deactivate
            service(user=obj, actor=console_user(request))
            obj.refresh_from_db()
            return
        super().save_model(request, obj, form, change)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        user: User = form.instance
        before = _group_names(user) if change else set()
        super().save_related(request, form, formsets, change)
        group_membership_changes_record(
            user=user, before=before, after=_group_names(user), actor=console_user(request)
        )

    @admin.action(
        description="Lock selected users (deactivate: ends their sessions and keys)", permissions=["change"]
    )
    def deactivate(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        for user in queryset:
            user_deactivate(user=user, actor=console_user(request))
        self.message_user(request, f"Deactivated {queryset.count()} user(s).")

    @admin.action(description="Activate selected users", permissions=["change"])
    def activate(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        for user in queryset:
            user_activate(user=user, actor=console_user(request))
        self.message_user(request, f"Activated {queryset.count()} user(s).")

    @admin.action(
        description="Reset second factors of selected users (authenticators and recovery codes)",
        permissions=["change"],
    )
    def reset_second_factors(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        removed = sum(two_factor_reset(user=user, actor=console_user(request)) for user in queryset)
        self.message_user(
            request, f"Removed {removed} second-factor device(s) of {queryset.count()} user(s)."
        )


admin.site.unregister(Group)


@admin.register(Group)
class RoleAdmin(GroupAdmin):
    """Roles and their permission sets. Team groups are managed on the Teams page."""

    fields = ("name", "permissions")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Group]:
        return super().get_queryset(request).exclude(name__startswith=TEAM_GROUP_PREFIX)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        group: Group = form.instance
        before = set(group.permissions.values_list("codename", flat=True)) if change else set()
        super().save_related(request, form, formsets, change)
        after = set(group.permissions.values_list("codename", flat=True))
        if before != after:
            audit_event_record(
                action="role.permissions.changed",
                actor=console_user(request),
                target=group,
                metadata={"added": sorted(after - before), "removed": sorted(before - after)},
            )


class ApiKeyCreateForm(forms.ModelForm):  # type: ignore[type-arg]
    scopes = forms.MultipleChoiceField(choices=ApiKey.Scope.choices, widget=forms.CheckboxSelectMultiple)
    allowed_networks = forms.CharField(
        required=False, help_text="Comma-separated IP addresses or CIDR ranges; empty means anywhere."
    )

    class Meta:
        model = ApiKey
        fields = ["user", "name", "scopes", "expires_at", "allowed_networks"]

    def clean_allowed_networks(self) -> list[str]:
        raw = self.cleaned_data.get("allowed_networks") or ""
        return [entry.strip() for entry in raw.split(",") if entry.strip()]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin[ApiKey]):
    """Admins see and revoke anyone's keys, and may issue one for a user (shown once)."""

    list_display = (
        "name",
        "user",
        "key_prefix",
        "scopes",
        "expires_at",
        "revoked_at",
        "last_used_at",
        "created_at",
    )
    list_filter = ("revoked_at", "expires_at")
    search_fields = ("name", "prefix", "user__username")
    actions = ["revoke"]

    @admin.display(description="Key")
    def key_prefix(self, key: ApiKey) -> str:
        return f"gk_{key.prefix}_…"

    def get_form(
        self, request: HttpRequest, obj: ApiKey | None = None, change: bool = False, **kwargs: Any
    ) -> Any:
        if obj is None:
            kwargs["form"] = ApiKeyCreateForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> Any:
        if obj is None:
            return ()
        return [field.name for field in ApiKey._meta.fields]

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            return  # keys are immutable; revoke and issue a new one instead
        key, raw = api_key_create(
            user=form.cleaned_data["user"],
            name=form.cleaned_data["name"],
            scopes=form.cleaned_data["scopes"],
            expires_at=form.cleaned_data.get("expires_at"),
            allowed_networks=form.cleaned_data["allowed_networks"],
            actor=console_user(request),
        )
        obj.pk = key.pk
        messages.warning(request, f"The new key, shown only this once: {raw}")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revocation keeps the record; deleting would lose it

    # Revoking changes the key (it keeps its record), so it needs the change permission.
    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for key in queryset:
            api_key_revoke(api_key=key, actor=console_user(request))
        self.message_user(request, f"Revoked {queryset.count()} key(s).")


class TeamForm(forms.ModelForm):  # type: ignore[type-arg]
    members = forms.ModelMultipleChoiceField(
        queryset=User.objects.order_by("username"),
        required=False,
        widget=FilteredSelectMultiple("members", is_stacked=False),
    )

    class Meta:
        model = Team
        fields = ["name", "description"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["members"].initial = self.instance.group.user_set.all()
            self.fields["name"].disabled = True  # the name is the team's group name


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin[Team]):
    form = TeamForm
    list_display = ("name", "member_count", "created_at")
    search_fields = ("name", "description")

    @admin.display(description="Members")
    def member_count(self, team: Team) -> int:
        return team.group.user_set.count()

    def save_model(self, request: HttpRequest, obj: Team, form: Any, change: bool) -> None:
        actor = console_user(request)
        if change:
            obj.save(update_fields=["description"])
            team = obj
        else:
            team = team_create(name=obj.name, description=obj.description, actor=actor)
            obj.pk, obj.group = team.pk, team.group
        current = set(team.group.user_set.all())
        wanted = set(form.cleaned_data["members"])
        for user in wanted - current:
            team_member_add(team=team, user=user, actor=actor)
        for user in current - wanted:
            team_member_remove(team=team, user=user, actor=actor)

    def delete_model(self, request: HttpRequest, obj: Team) -> None:
        team_delete(team=obj, actor=console_user(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Team]) -> None:
        for team in queryset:
            team_delete(team=team, actor=console_user(request))


@admin.register(QuotaPolicy)
class QuotaPolicyAdmin(admin.ModelAdmin[QuotaPolicy]):
    """Quota policies; every change is audited with before and after (accounts.services.quotas)."""

    # The list shows every field the form edits.
    fields = (
        "name",
        "user",
        "team",
        "api_key",
        "role",
        "requests_per_minute",
        "tokens_per_day",
        "tokens_per_month",
        "concurrent_streams",
    )
    list_display = fields
    list_filter = ("role", "team")
    search_fields = ("name", "user__username", "team__name")
    autocomplete_fields = ("user",)

    def save_model(self, request: HttpRequest, obj: QuotaPolicy, form: Any, change: bool) -> None:
        quota_policy_save(policy=obj, actor=console_user(request))

    def delete_model(self, request: HttpRequest, obj: QuotaPolicy) -> None:
        quota_policy_delete(policy=obj, actor=console_user(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[QuotaPolicy]) -> None:
        for policy in queryset:
            quota_policy_delete(policy=policy, actor=console_user(request))


@admin.register(TwoFactorRolePolicy)
class TwoFactorRolePolicyAdmin(admin.ModelAdmin[TwoFactorRolePolicy]):
    """Which roles must have a second factor; audited with before and after
    (accounts.services.two_factor), besides the console's own change log."""

    fields = ("role", "required")
    list_display = ("role", "required", "updated_at")

    def save_model(self, request: HttpRequest, obj: TwoFactorRolePolicy, form: Any, change: bool) -> None:
        two_factor_role_policy_save(policy=obj, actor=console_user(request))

    def delete_model(self, request: HttpRequest, obj: TwoFactorRolePolicy) -> None:
        two_factor_role_policy_delete(policy=obj, actor=console_user(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[TwoFactorRolePolicy]) -> None:
        for policy in queryset:
            two_factor_role_policy_delete(policy=policy, actor=console_user(request))

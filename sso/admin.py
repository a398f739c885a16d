"""Single sign-on in the console: group mappings (admins) and linked provider accounts."""

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.authentication import console_user
from sso.models import ExternalIdentity, GroupMapping
from sso.services import (
    external_identity_delete,
    external_identity_save,
    group_mapping_delete,
    group_mapping_save,
)


@admin.register(GroupMapping)
class GroupMappingAdmin(admin.ModelAdmin[GroupMapping]):
    fields = ("provider", "group", "role", "team")
    list_display = ("provider", "group", "role", "team")
    list_filter = ("provider", "role", "team")
    search_fields = ("group",)

    def save_model(self, request: HttpRequest, obj: GroupMapping, form: Any, change: bool) -> None:
        group_mapping_save(mapping=obj, actor=console_user(request))

    def delete_model(self, request: HttpRequest, obj: GroupMapping) -> None:
        group_mapping_delete(mapping=obj, actor=console_user(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[GroupMapping]) -> None:
        for mapping in queryset:
            group_mapping_delete(mapping=mapping, actor=console_user(request))


@admin.register(ExternalIdentity)
class ExternalIdentityAdmin(admin.ModelAdmin[ExternalIdentity]):
    """Link a person to a provider account (by its `sub`), or unlink it; never edited in place."""

    fields = ("user", "provider", "subject", "email", "created_at", "last_sign_in_at")
    readonly_fields = ("created_at", "last_sign_in_at")
    list_display = ("user", "provider", "subject", "email", "last_sign_in_at")
    list_filter = ("provider",)
    search_fields = ("user__username", "subject", "email")
    autocomplete_fields = ("user",)

    def get_readonly_fields(self, request: HttpRequest, obj: ExternalIdentity | None = None) -> Any:
        if obj is not None:
            return self.fields
        return self.readonly_fields

    def save_model(self, request: HttpRequest, obj: ExternalIdentity, form: Any, change: bool) -> None:
        external_identity_save(identity=obj, actor=console_user(request))

    def delete_model(self, request: HttpRequest, obj: ExternalIdentity) -> None:
        external_identity_delete(identity=obj, actor=console_user(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ExternalIdentity]) -> None:
        for identity in queryset:
            external_identity_delete(identity=identity, actor=console_user(request))

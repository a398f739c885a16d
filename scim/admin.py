"""SCIM tokens in the console: admins list and revoke them. They are made only with
`manage.py scim_token_create NAME`, which shows the token once."""

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.authentication import console_user
from scim.models import TOKEN_SCHEME, ScimToken
from scim.services import scim_token_revoke


@admin.register(ScimToken)
class ScimTokenAdmin(admin.ModelAdmin[ScimToken]):
    list_display = ("name", "token_prefix", "created_by", "created_at", "last_used_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("name", "prefix")
    fields = ("name", "prefix", "created_by", "created_at", "last_used_at", "revoked_at")
    readonly_fields = fields
    actions = ["revoke"]

    @admin.display(description="Token")
    def token_prefix(self, token: ScimToken) -> str:
        return f"{TOKEN_SCHEME}{token.prefix}_…"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # made by the management command, which shows the token once

    def has_delete_permission(self, request: HttpRequest, obj: ScimToken | None = None) -> bool:
        return False  # revocation keeps the record; deleting would lose it

    # Revoking changes the token (it keeps its record), so it needs the change permission.
    @admin.action(description="Revoke selected SCIM tokens", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ScimToken]) -> None:
        for token in queryset:
            scim_token_revoke(token=token, actor=console_user(request))
        self.message_user(request, f"Revoked {queryset.count()} SCIM token(s).")

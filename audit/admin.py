from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from audit.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin[AuditEvent]):
    """Read-only: the trail is written by services, never edited by hand."""

    list_display = (
        "sequence",
        "occurred_at",
        "actor_display",
        "actor_kind",
        "action",
        "target_display",
        "outcome",
    )
    list_filter = ("actor_kind", "outcome", "action")
    search_fields = (
        "=sequence",
        "actor_display",
        "action",
        "target_display",
        "=request_id",
        "=actor_pseudonym",
    )
    date_hierarchy = "occurred_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from accounts.models import User
from audit.compliance import (
    ComplianceRefused,
    compliance_erasure_refusal,
    compliance_erasure_request,
    compliance_export_request,
)
from audit.models import AuditEvent, ComplianceRequest, ErasureRequest, ExportRequest
from audit.selectors import audit_chain_status


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

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        # The audit browser shows the chain's state above the events (head, last checkpoint).
        return super().changelist_view(request, {**(extra_context or {}), "chain": audit_chain_status()})

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ComplianceRequestForm(forms.ModelForm):  # type: ignore[type-arg]
    """The console's "add" form: whom the request is for; the service does the rest."""

    person = forms.ModelChoiceField(queryset=User.objects.filter(is_active=True).order_by("username"))

    class Meta:
        fields: tuple[str, ...] = ()

    def clean_person(self) -> User:
        person: User = self.cleaned_data["person"]
        if self._meta.model is ErasureRequest:
            refusal = compliance_erasure_refusal(subject=person)
            if refusal:
                raise forms.ValidationError(refusal)
        return person


class _ComplianceRequestAdmin(admin.ModelAdmin[Any]):
    """The officers' queue: every request with its status and deadline, oldest due first."""

    list_display: tuple[str, ...] = (
        "short_id",
        "subject_name",
        "status",
        "progress",
        "due_at",
        "is_overdue",
        "attempts",
        "created_at",
    )
    list_filter = ("status",)
    ordering = ("due_at",)
    search_fields = ("=id", "=subject_pseudonym", "subject__username")
    form = ComplianceRequestForm
    request_service: Any = None

    @admin.display(description="request")
    def short_id(self, obj: ComplianceRequest) -> str:
        return str(obj.pk)[:8]

    @admin.display(description="subject")
    def subject_name(self, obj: ComplianceRequest) -> str:
        return obj.subject.get_username() if obj.subject else f"(erased) {obj.subject_pseudonym}"

    @admin.display(description="overdue", boolean=True)
    def is_overdue(self, obj: ComplianceRequest) -> bool:
        return obj.overdue

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ("person",) if obj is None else [field.name for field in self.model._meta.fields]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return () if obj is None else self.get_fields(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        try:
            made = type(self).request_service(subject=form.cleaned_data["person"], requested_by=request.user)
        except ComplianceRefused as refused:
            if refused.existing is None:
                raise
            made = refused.existing
            messages.warning(request, f"{refused.message} Showing that request instead.")
        # The admin redirects to, and logs, the object it was handed: make it the one created.
        obj.__dict__.update(made.__dict__)


@admin.register(ExportRequest)
class ExportRequestAdmin(_ComplianceRequestAdmin):
    request_service = staticmethod(compliance_export_request)
    list_display = (*_ComplianceRequestAdmin.list_display, "download")

    @admin.display(description="download")
    def download(self, obj: ExportRequest) -> str:
        if obj.status != ExportRequest.Status.DONE or not obj.file_name:
            return "-"
        url = reverse("compliance-export-download", args=[obj.pk])
        until = f"{obj.download_expires_at:%Y-%m-%d %H:%M}" if obj.download_expires_at else "-"
        return format_html('<a href="{}">zip</a> (until {})', url, until)


@admin.register(ErasureRequest)
class ErasureRequestAdmin(_ComplianceRequestAdmin):
    request_service = staticmethod(compliance_erasure_request)

"""A remote version's deployments in the console: listed with their health, added while the
version is a draft or staging (through `model_deployment_add`, as the API and command do)."""

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from inference.admin.credentials import upstream_credential_choices_offer, upstream_credential_field
from inference.engines.circuit_breaker import circuit_breaker_state
from inference.engines.deployment_load import deployment_in_flight, deployment_key
from inference.models import Deployment, Model, ModelVersion
from inference.services import model_deployment_add, model_version_upstream_errors

# What a new deployment sets; nothing of an existing one changes (a change is a new version).
DEPLOYMENT_FIELDS = (
    "base_url",
    "remote_model",
    "credential_ref",
    "weight",
    "max_concurrency",
    "tokens_per_minute",
)


class DeploymentForm(forms.ModelForm):  # type: ignore[type-arg]
    credential_ref = upstream_credential_field(
        help_text="The GATEHOUSE_UPSTREAM_… variable holding its key (only names set here are offered)."
    )

    class Meta:
        model = Deployment
        fields = list(DEPLOYMENT_FIELDS)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        upstream_credential_choices_offer(self)

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        errors = model_version_upstream_errors(
            base_url=cleaned.get("base_url") or "", credential_ref=cleaned.get("credential_ref") or ""
        )
        for name, message in errors.items():
            self.add_error("base_url" if name == "remote_base_url" else name, message)
        return cleaned


class DeploymentInline(admin.TabularInline[Deployment, ModelVersion]):
    model = Deployment
    form = DeploymentForm
    fields = (*DEPLOYMENT_FIELDS, "health")
    readonly_fields = ("health",)
    extra = 0
    can_delete = False

    @admin.display(description="health (this server)")
    def health(self, deployment: Deployment) -> str:
        if not deployment.pk:
            return ""
        state = circuit_breaker_state(base_url=deployment.base_url)
        counted = deployment.max_concurrency or deployment.tokens_per_minute
        if not counted and deployment.version.model.routing != Model.Routing.LEAST_BUSY:
            return state  # calls in flight are counted only where a limit or routing needs them
        key = deployment_key(base_url=deployment.base_url, remote_model=deployment.remote_model)
        counts = deployment_in_flight(keys=[key])
        return f"{state}; {counts[0]} in flight" if counts is not None else state

    def has_add_permission(self, request: HttpRequest, obj: ModelVersion | None = None) -> bool:
        return (
            obj is not None
            and obj.status in (ModelVersion.Status.DRAFT, ModelVersion.Status.STAGING)
            and bool(request.user.has_perm("inference.change_modelversion"))
        )

    def has_view_permission(self, request: HttpRequest, obj: ModelVersion | None = None) -> bool:
        # A version's deployments are part of it: whoever may see the version sees them.
        return bool(request.user.has_perm("inference.view_modelversion"))

    def has_change_permission(self, request: HttpRequest, obj: ModelVersion | None = None) -> bool:
        return False  # shown, never edited

    def has_delete_permission(self, request: HttpRequest, obj: ModelVersion | None = None) -> bool:
        return False


def deployments_add(*, version: ModelVersion, formset: Any, actor: Any) -> None:
    """The new rows of the console's deployments formset, each through the service (instead
    of `formset.save()`, whose bookkeeping the admin's change message reads)."""
    formset.new_objects = [
        model_deployment_add(
            version=version, **{name: form.cleaned_data[name] for name in DEPLOYMENT_FIELDS}, actor=actor
        )
        for form in formset.extra_forms
        if form.has_changed()
    ]
    formset.changed_objects, formset.deleted_objects = [], []

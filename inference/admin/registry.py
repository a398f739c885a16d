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
from inference.admin.actions import (
    CANARY_VERSION,
    PROMOTE_VERSION,
    RETIRE_VERSION,
    apply_each,
    canary_start_view,
)
from inference.admin.credentials import upstream_credential_choices_offer, upstream_credential_field
from inference.admin.deployments import DeploymentInline, deployments_add
from inference.admin.serving import ModelServingForm, model_serving_save
from inference.models import Deployment, Model, ModelVersion
from inference.services import (
    model_access_grant,
    model_access_revoke,
    model_canary_stop,
    model_version_canary_start,
    model_version_prices_update,
    model_version_promote,
    model_version_register,
    model_version_register_remote,
    model_version_retire,
    model_version_rollback,
    model_version_stage,
    model_version_update,
    model_version_upstream_errors,
)
from inference.services.registry import MODEL_VERSION_REGISTRATION_FIELDS, MODEL_VERSION_UPDATABLE_FIELDS
from inference.upstream_credentials import upstream_credential_names


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


class ModelForm(ModelServingForm, forms.ModelForm):  # type: ignore[type-arg]
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
            "kind",
            "description",
            "open_to_all",
            "max_tokens_cap",
            "default_max_tokens",
            "wall_clock_limit_seconds",
            "max_choices",
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
            self.serving_initial(self.instance)

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        if cleaned.get("canary") and not cleaned.get("canary_percent"):
            self.add_error("canary_percent", "Give the share of conversations the canary gets.")
        return cleaned


@admin.register(Model)
class ModelAdmin(admin.ModelAdmin[Model]):
    form = ModelForm
    list_display = ("name", "kind", "open_to_all", "max_tokens_cap", "updated_at")
    search_fields = ("name", "description")
    inlines = [ModelVersionInline]
    actions = ["roll_back", "stop_canary"]

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> tuple[str, ...]:
        # What a model does is chosen when it is registered: its versions are of that kind.
        return ("kind",) if obj is not None else ()

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
        model_serving_save(model_admin=self, request=request, model=model, cleaned=form.cleaned_data)

    def _canary_update(
        self, request: HttpRequest, model: Model, canary: ModelVersion | None, percent: int | None
    ) -> None:
        model.refresh_from_db()
        stopping = canary is None and model.canary_version_id is not None
        starting = canary is not None and (
            canary.pk != model.canary_version_id or percent != model.canary_weight
        )
        if (stopping or starting) and not self.has_canary_permission(request):
            self.message_user(
                request,
                "The canary was left as it was: starting or stopping one needs the permission "
                "to run canaries (inference.canary_modelversion).",
                level=messages.ERROR,
            )
            return
        if canary is None:
            if stopping:
                model_canary_stop(model=model, actor=console_user(request))
        elif starting:
            try:
                model_version_canary_start(version=canary, weight=percent or 0, actor=console_user(request))
            except ValidationError as refused:
                self.message_user(request, " ".join(refused.messages), level=messages.ERROR)

    # Rolling back puts another version in production: the promotion right, not the page's.
    def has_promote_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.has_perm(PROMOTE_VERSION))

    def has_canary_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.has_perm(CANARY_VERSION))

    @admin.action(description="Roll back to the previous production version", permissions=["promote"])
    def roll_back(self, request: HttpRequest, queryset: QuerySet[Model]) -> None:
        apply_each(
            self,
            request,
            queryset,
            lambda model: model_version_rollback(model=model, actor=console_user(request)),
            "Rolled back",
        )

    @admin.action(description="Stop the canary", permissions=["canary"])
    def stop_canary(self, request: HttpRequest, queryset: QuerySet[Model]) -> None:
        apply_each(
            self,
            request,
            queryset,
            lambda model: model_canary_stop(model=model, actor=console_user(request)),
            "Canary stopped",
        )


# Registering a version (the add page) sets where it comes from; nothing else is editable there.
VERSION_ADD_FIELDS = (
    "model",
    "label",
    "backend",
    "source",
    "remote_base_url",
    "remote_model",
    "credential_ref",
    "allow_pickle_weights",
    "dtype",
    "context_length",
    "tool_call_format",
)
# On an existing version, what registration fixed is shown, never edited: a change there is a
# new version with its own review. Status moves through the actions; the manifest is computed
# at registration; the credential is the name of a secret, never the secret.
VERSION_CHANGE_READONLY_FIELDS = (
    *MODEL_VERSION_REGISTRATION_FIELDS,
    "status",
    "created_at",
    "promoted_at",
    "retired_at",
)
# Prices change through their own service (audited, from the next request on).
VERSION_PRICE_FIELDS = ("input_price_per_million", "output_price_per_million")
VERSION_CHANGE_EDITABLE_FIELDS = (*MODEL_VERSION_UPDATABLE_FIELDS, *VERSION_PRICE_FIELDS)


class ModelVersionAddForm(forms.ModelForm):  # type: ignore[type-arg]
    """Registering a version in the console, under the services' rules (shown as form errors)."""

    credential_ref = upstream_credential_field(
        help_text="Remote versions: the environment variable (GATEHOUSE_UPSTREAM_…) holding the "
        "upstream's API key. Only the names set on this server are offered; the key is never shown."
    )

    class Meta:
        model = ModelVersion
        fields = list(VERSION_ADD_FIELDS)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        upstream_credential_choices_offer(self)

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        if cleaned.get("backend") == ModelVersion.Backend.OPENAI_COMPATIBLE:
            self._clean_remote(cleaned)
        else:
            self._clean_local(cleaned)
        return cleaned

    def _clean_remote(self, cleaned: dict[str, Any]) -> None:
        for name in ("source", "allow_pickle_weights"):
            if cleaned.get(name):
                self.add_error(name, "A remote version has no local files: leave this empty.")
        for name in ("remote_base_url", "remote_model"):
            if not cleaned.get(name) and name not in self.errors:
                self.add_error(name, "A remote version needs this.")
        credential = cleaned.get("credential_ref") or ""
        errors = model_version_upstream_errors(
            base_url=cleaned.get("remote_base_url") or "", credential_ref=credential
        )
        for name, message in errors.items():
            self.add_error(name, message)
        if credential and "credential_ref" not in errors and credential not in upstream_credential_names():
            self.add_error("credential_ref", f"{credential} is not set in this server's environment.")

    def _clean_local(self, cleaned: dict[str, Any]) -> None:
        for name in ("remote_base_url", "remote_model", "credential_ref"):
            if cleaned.get(name):
                self.add_error(name, "Only a remote version has an upstream: leave this empty.")
        source = cleaned.get("source") or ""
        if not source or not (ModelVersion(source=source).source_path / "config.json").is_file():
            self.add_error(
                "source",
                "Give a Hugging Face model directory (with config.json), absolute or relative to "
                "the model root.",
            )


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin[ModelVersion]):
    list_display = ("__str__", "backend", "status", "dtype", "promoted_at", "created_at")
    list_filter = ("status", "backend")
    actions = ["stage", "promote", "start_canary", "retire"]

    def get_fields(self, request: HttpRequest, obj: ModelVersion | None = None) -> Any:
        if obj is None:
            return VERSION_ADD_FIELDS
        return (*VERSION_CHANGE_READONLY_FIELDS, *VERSION_CHANGE_EDITABLE_FIELDS)

    def get_readonly_fields(self, request: HttpRequest, obj: ModelVersion | None = None) -> Any:
        return () if obj is None else VERSION_CHANGE_READONLY_FIELDS

    def get_form(
        self, request: HttpRequest, obj: ModelVersion | None = None, change: bool = False, **kwargs: Any
    ) -> Any:
        if obj is None:
            kwargs["form"] = ModelVersionAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_inlines(self, request: HttpRequest, obj: ModelVersion | None = None) -> Any:
        remote = obj is not None and obj.backend == ModelVersion.Backend.OPENAI_COMPATIBLE
        return [DeploymentInline] if remote else []

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        if formset.model is Deployment:
            deployments_add(version=form.instance, formset=formset, actor=console_user(request))
            return
        super().save_formset(request, form, formset, change)

    def save_model(self, request: HttpRequest, obj: ModelVersion, form: Any, change: bool) -> None:
        """Through the services: registration records the console user as the version's author
        (so separation of duties applies), and a change touches only what may change."""
        actor = console_user(request)
        data = form.cleaned_data
        if change:
            changes = {
                name: data[name] for name in form.changed_data if name in MODEL_VERSION_UPDATABLE_FIELDS
            }
            if changes:
                model_version_update(version=obj, changes=changes, actor=actor)
            if set(form.changed_data) & set(VERSION_PRICE_FIELDS):
                model_version_prices_update(
                    version=obj,
                    input_per_million=data["input_price_per_million"],
                    output_per_million=data["output_price_per_million"],
                    actor=actor,
                )
            return
        if data["backend"] == ModelVersion.Backend.OPENAI_COMPATIBLE:
            version = model_version_register_remote(
                model=data["model"],
                label=data["label"],
                base_url=data["remote_base_url"],
                remote_model=data["remote_model"],
                credential_ref=data["credential_ref"],
                context_length=data["context_length"],
                actor=actor,
            )
        else:
            version = model_version_register(
                model=data["model"],
                label=data["label"],
                source=data["source"],
                context_length=data["context_length"],
                dtype=data["dtype"],
                allow_pickle_weights=data["allow_pickle_weights"],
                tool_call_format=data["tool_call_format"],
                actor=actor,
            )
        obj.pk = version.pk
        obj.created_by = version.created_by

    def has_promote_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.has_perm(PROMOTE_VERSION))

    def has_canary_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.has_perm(CANARY_VERSION))

    def has_retire_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.has_perm(RETIRE_VERSION))

    @admin.action(description="Stage (draft → staging)", permissions=["change"])
    def stage(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        apply_each(
            self,
            request,
            queryset,
            lambda v: model_version_stage(version=v, actor=console_user(request)),
            "Staged",
        )

    @admin.action(description="Promote to production", permissions=["promote"])
    def promote(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        apply_each(
            self,
            request,
            queryset,
            lambda v: model_version_promote(version=v, actor=console_user(request)),
            "Promoted",
        )

    @admin.action(description="Start a canary beside production…", permissions=["canary"])
    def start_canary(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> TemplateResponse | None:
        return canary_start_view(self, request, queryset)

    @admin.action(description="Retire", permissions=["retire"])
    def retire(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        apply_each(
            self,
            request,
            queryset,
            lambda v: model_version_retire(version=v, actor=console_user(request)),
            "Retired",
        )

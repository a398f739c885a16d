"""Console actions on models and versions: each runs a lifecycle service per selected object."""

from collections.abc import Callable, Iterable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse

from accounts.authentication import console_user
from inference.models import ModelVersion
from inference.services import model_version_canary_start
from inference.services.lifecycle import MAX_CANARY_WEIGHT

# The lifecycle's own rights (ModelVersion's Meta.permissions): editing a version's page is
# not enough to put it in front of users. Actions name them as "promote", "canary", "retire"
# and the admins check them in `has_<name>_permission`.
PROMOTE_VERSION = "inference.promote_modelversion"
CANARY_VERSION = "inference.canary_modelversion"
RETIRE_VERSION = "inference.retire_modelversion"


def apply_each(
    admin_view: admin.ModelAdmin[Any],
    request: HttpRequest,
    objects: Iterable[Any],
    change: Callable[[Any], object],
    done: str,
) -> None:
    """Run a lifecycle service per object; report refusals (ValidationError) as messages."""
    succeeded = 0
    for obj in objects:
        try:
            change(obj)
        except ValidationError as refused:
            admin_view.message_user(request, f"{obj}: {' '.join(refused.messages)}", level=messages.ERROR)
        else:
            succeeded += 1
    if succeeded:
        admin_view.message_user(request, f"{done}: {succeeded}.")


class CanaryWeightForm(forms.Form):
    weight = forms.IntegerField(
        min_value=1,
        max_value=MAX_CANARY_WEIGHT,
        label="Share of conversations (%)",
        help_text="New conversations go to the canary with this probability; the rest stay on production.",
    )


def canary_start_view(
    admin_view: admin.ModelAdmin[ModelVersion], request: HttpRequest, queryset: QuerySet[ModelVersion]
) -> TemplateResponse | None:
    """The "start a canary" action: first a page asking for the weight, then the service per version.

    Returning None sends the console back to the list, as every action does when it is done.
    """
    form = CanaryWeightForm(request.POST if "apply" in request.POST else None)
    if form.is_bound and form.is_valid():
        weight = form.cleaned_data["weight"]
        apply_each(
            admin_view,
            request,
            queryset.select_related("model"),
            lambda version: model_version_canary_start(
                version=version, weight=weight, actor=console_user(request)
            ),
            f"Canary started at {weight}%",
        )
        return None
    return TemplateResponse(
        request,
        "admin/inference/modelversion/canary_start.html",
        {
            **admin_view.admin_site.each_context(request),
            "title": "Start a canary",
            "opts": admin_view.model._meta,
            "form": form,
            "versions": queryset.select_related("model"),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        },
    )

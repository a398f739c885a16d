"""How a model is served, on its console page: routing among deployments, fallback models and
the response cache, changed through `model_serving_update` (as the API does), audited."""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest

from accounts.authentication import console_user
from inference.models import MAX_RESPONSE_CACHE_SECONDS, Model
from inference.services import MODEL_SERVING_FIELDS, model_serving_update

# The form's names for the model's serving fields: not the model's own, so that the console's
# form never saves them itself (only the service does, audited).
_PREFIX = "serving_"


class ModelServingForm(forms.Form):
    """The serving fields, mixed into the model page's form (saved by `model_serving_save`)."""

    serving_routing = forms.ChoiceField(
        label="Routing",
        required=False,
        choices=Model.Routing.choices,
        initial=Model.Routing.WEIGHTED,
        help_text="How a remote version's deployments share its calls.",
    )
    serving_fallback_models = forms.CharField(
        label="Fallback models",
        required=False,
        help_text="Models asked in turn when this one cannot answer before its first token "
        "(names, comma-separated, in order); each is checked against the caller's access and quotas.",
    )
    serving_response_cache = forms.BooleanField(
        label="Response cache",
        required=False,
        help_text="Answer a deterministic request (temperature 0, or a seed) asked again from the first answer.",
    )
    serving_response_cache_seconds = forms.IntegerField(
        label="Cached answers kept (seconds)",
        required=False,
        min_value=1,
        max_value=MAX_RESPONSE_CACHE_SECONDS,
        initial=300,
    )
    serving_response_cache_charge = forms.ChoiceField(
        label="A cached answer is charged",
        required=False,
        choices=Model.CacheCharge.choices,
        initial=Model.CacheCharge.FULL,
    )
    serving_response_cache_shared = forms.BooleanField(
        label="Cached answers shared across teams",
        required=False,
        help_text="Give cached answers to every team (by default, only to the caller's teams).",
    )

    def serving_initial(self, model: Model) -> None:
        for name in MODEL_SERVING_FIELDS:
            value = getattr(model, name)
            self.fields[_PREFIX + name].initial = ", ".join(value) if name == "fallback_models" else value

    def clean_serving_fallback_models(self) -> list[str]:
        text = self.cleaned_data["serving_fallback_models"]
        return [name.strip() for name in text.split(",") if name.strip()]


def model_serving_save(
    *, model_admin: "admin.ModelAdmin[Model]", request: HttpRequest, model: Model, cleaned: dict[str, Any]
) -> None:
    """Apply what changed of the serving fields; a refusal is shown on the page, nothing changes."""
    model.refresh_from_db()
    given = {
        name: cleaned[_PREFIX + name]
        for name in MODEL_SERVING_FIELDS
        if cleaned.get(_PREFIX + name) not in (None, "")
    }
    if _PREFIX + "fallback_models" in cleaned:  # an empty list is a choice: no fallbacks
        given["fallback_models"] = cleaned[_PREFIX + "fallback_models"]
    changes = {name: value for name, value in given.items() if value != getattr(model, name)}
    if not changes:
        return
    try:
        model_serving_update(model=model, changes=changes, actor=console_user(request))
    except ValidationError as refused:
        model_admin.message_user(
            request,
            "How the model is served was left as it was: " + " ".join(refused.messages),
            level=messages.ERROR,
        )

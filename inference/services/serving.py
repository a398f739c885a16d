"""How a model is served beyond its versions: routing among deployments, the models it falls
back to, and its response cache. One service changes them, from the console and the API."""

from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from accounts.models import User
from audit.services import audit_event_record
from inference.models import MAX_FALLBACK_MODELS, Model
from inference.services._actors import actor_kwargs

# What `model_serving_update` may change.
MODEL_SERVING_FIELDS = (
    "routing",
    "fallback_models",
    "response_cache",
    "response_cache_seconds",
    "response_cache_charge",
    "response_cache_shared",
)


def _fallbacks_check(model: Model, names: Any) -> list[str]:
    """The fallback list as given, or ValidationError: names of other existing models of the
    same kind, each once, at most MAX_FALLBACK_MODELS."""
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise ValidationError({"fallback_models": "Give a list of model names."})
    if len(names) > MAX_FALLBACK_MODELS:
        raise ValidationError({"fallback_models": f"At most {MAX_FALLBACK_MODELS} fallback models."})
    if len(set(names)) != len(names) or model.name in names:
        raise ValidationError({"fallback_models": "Name each other model once, and never this one."})
    found = dict(Model.objects.filter(name__in=names).values_list("name", "kind"))
    if missing := [name for name in names if name not in found]:
        raise ValidationError({"fallback_models": f"No model named {', '.join(missing)}."})
    if other := [name for name in names if found[name] != model.kind]:
        raise ValidationError(
            {"fallback_models": f"{', '.join(other)} is not a {model.kind} model, as {model.name} is."}
        )
    return names


@transaction.atomic
def model_serving_update(*, model: Model, changes: Mapping[str, object], actor: User | None) -> Model:
    """Change how `model` is served (MODEL_SERVING_FIELDS); audited with before and after.

    Raises ValidationError for a field that is not one of these, a value out of range, or a
    fallback list that names no other model of the same kind. Nothing changes on a refusal.
    """
    if unknown := sorted(set(changes) - set(MODEL_SERVING_FIELDS)):
        raise ValidationError(dict.fromkeys(unknown, "This cannot be changed here."))
    model = Model.objects.select_for_update().get(pk=model.pk)
    if "fallback_models" in changes:
        _fallbacks_check(model, changes["fallback_models"])
    before = {name: getattr(model, name) for name in changes}
    for name, value in changes.items():
        setattr(model, name, value)
    model.full_clean()
    after = {name: getattr(model, name) for name in changes}
    if after == before:
        return model
    model.save(update_fields=[*changes, "updated_at"])
    audit_event_record(
        action="model.serving_changed",
        target=model,
        metadata={"before": before, "after": after},
        **actor_kwargs(actor),  # type: ignore[arg-type]
    )
    return model

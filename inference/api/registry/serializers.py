"""What the registry API takes and gives: models, their versions, lifecycle arguments."""

from decimal import Decimal
from pathlib import PurePosixPath
from typing import Any

from rest_framework import serializers

from inference.models import (
    MAX_DEPLOYMENT_WEIGHT,
    MAX_FALLBACK_MODELS,
    MAX_RESPONSE_CACHE_SECONDS,
    Model,
    ModelVersion,
)
from inference.services.lifecycle import MAX_CANARY_WEIGHT
from spend.money import PRICE_DECIMAL_PLACES, PRICE_MAX_DIGITS, currency


class DeploymentOutputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    base_url = serializers.CharField()
    remote_model = serializers.CharField()
    credential_ref = serializers.CharField()
    weight = serializers.IntegerField()
    max_concurrency = serializers.IntegerField(allow_null=True)
    tokens_per_minute = serializers.IntegerField(allow_null=True)


class DeploymentAddInputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    base_url = serializers.URLField(max_length=200)
    remote_model = serializers.CharField(max_length=200)
    credential_ref = serializers.CharField(required=False, allow_blank=True, default="", max_length=100)
    weight = serializers.IntegerField(default=1, min_value=1, max_value=MAX_DEPLOYMENT_WEIGHT)
    max_concurrency = serializers.IntegerField(
        required=False,
        allow_null=True,
        default=None,
        min_value=1,
        help_text="Calls at once (none: no limit).",
    )
    tokens_per_minute = serializers.IntegerField(
        required=False,
        allow_null=True,
        default=None,
        min_value=1,
        help_text="Prompt and answer tokens a minute.",
    )


class VersionOutputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    label = serializers.CharField()  # type: ignore[assignment]
    status = serializers.CharField()
    backend = serializers.CharField()
    # A local version's directory, relative to the model root.
    source = serializers.CharField()  # type: ignore[assignment]
    hub_repo = serializers.CharField()
    hub_revision = serializers.CharField()
    remote_base_url = serializers.CharField()
    remote_model = serializers.CharField()
    credential_ref = serializers.CharField(
        help_text="The name of the variable holding the key; never the key."
    )
    context_length = serializers.IntegerField()
    dtype = serializers.CharField()
    tool_call_format = serializers.CharField()
    created_at = serializers.DateTimeField()
    promoted_at = serializers.DateTimeField(allow_null=True)
    retired_at = serializers.DateTimeField(allow_null=True)
    deployments = DeploymentOutputSerializer(many=True, help_text="A remote version's upstreams.")
    input_price_per_million = serializers.DecimalField(
        max_digits=PRICE_MAX_DIGITS, decimal_places=PRICE_DECIMAL_PLACES, allow_null=True
    )
    output_price_per_million = serializers.DecimalField(
        max_digits=PRICE_MAX_DIGITS, decimal_places=PRICE_DECIMAL_PLACES, allow_null=True
    )
    currency = serializers.SerializerMethodField()

    def get_currency(self, _version: ModelVersion) -> str:
        return currency()


class CanaryOutputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    label = serializers.CharField()  # type: ignore[assignment]
    weight = serializers.IntegerField(help_text="Percent of conversations it answers.")


class ModelOutputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    name = serializers.CharField()
    kind = serializers.CharField()
    description = serializers.CharField()
    open_to_all = serializers.BooleanField()
    max_tokens_cap = serializers.IntegerField()
    default_max_tokens = serializers.IntegerField()
    wall_clock_limit_seconds = serializers.IntegerField()
    max_choices = serializers.IntegerField()
    routing = serializers.CharField()
    fallback_models = serializers.ListField(child=serializers.CharField())
    response_cache = serializers.BooleanField()
    response_cache_seconds = serializers.IntegerField()
    response_cache_charge = serializers.CharField()
    response_cache_shared = serializers.BooleanField()
    canary = serializers.SerializerMethodField()
    versions = VersionOutputSerializer(many=True)

    def get_canary(self, model: Model) -> dict[str, Any] | None:
        if model.canary_version is None:
            return None
        return {"label": model.canary_version.label, "weight": model.canary_weight}


class VersionPricesInputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """A version's prices per million tokens; null (or left out): not priced, it costs nothing."""

    input_per_million = serializers.DecimalField(
        max_digits=PRICE_MAX_DIGITS,
        decimal_places=PRICE_DECIMAL_PLACES,
        min_value=Decimal(0),
        allow_null=True,
        required=False,
        default=None,
    )
    output_per_million = serializers.DecimalField(
        max_digits=PRICE_MAX_DIGITS,
        decimal_places=PRICE_DECIMAL_PLACES,
        min_value=Decimal(0),
        allow_null=True,
        required=False,
        default=None,
    )
    currency = serializers.CharField(
        required=False, max_length=3, help_text="The platform's currency (GATEHOUSE_CURRENCY), if given."
    )


class ModelCreateInputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    name = serializers.SlugField(max_length=100)
    kind = serializers.ChoiceField(choices=Model.Kind.choices, default=Model.Kind.CHAT)
    description = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)
    open_to_all = serializers.BooleanField(default=False)
    max_tokens_cap = serializers.IntegerField(default=512, min_value=1, max_value=1_000_000)


class ModelServingInputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """How the model is served: any of these, the rest left as they are."""

    routing = serializers.ChoiceField(choices=Model.Routing.choices, required=False)
    fallback_models = serializers.ListField(
        child=serializers.SlugField(max_length=100),
        required=False,
        max_length=MAX_FALLBACK_MODELS,
        help_text="Models asked in turn when this one cannot answer before its first token.",
    )
    response_cache = serializers.BooleanField(required=False)
    response_cache_seconds = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_RESPONSE_CACHE_SECONDS
    )
    response_cache_charge = serializers.ChoiceField(choices=Model.CacheCharge.choices, required=False)
    response_cache_shared = serializers.BooleanField(
        required=False, help_text="Cached answers are given to every team (never, unless set)."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """A field this does not change is refused, not ignored: the caller meant something."""
        given = set(self.initial_data) if isinstance(self.initial_data, dict) else set()
        if unknown := sorted(given - set(self.fields)):
            raise serializers.ValidationError(dict.fromkeys(unknown, "This cannot be changed here."))
        if not attrs:
            raise serializers.ValidationError("Give at least one of: " + ", ".join(self.fields) + ".")
        return attrs


class VersionRegisterInputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """A local version (`source`: a directory under the model root) or a remote one
    (`base_url`, `remote_model`, and the name of the variable holding its key)."""

    label = serializers.RegexField(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", help_text="v2, 2026-12-01, ...")  # type: ignore[assignment]
    backend = serializers.ChoiceField(choices=ModelVersion.Backend.choices)
    source = serializers.CharField(required=False, max_length=500, help_text="transformers: relative path")  # type: ignore[assignment]
    base_url = serializers.URLField(required=False, max_length=200, help_text="openai_compatible")
    remote_model = serializers.CharField(required=False, max_length=200, help_text="openai_compatible")
    credential_ref = serializers.CharField(required=False, allow_blank=True, default="", max_length=100)
    context_length = serializers.IntegerField(required=False, min_value=1, max_value=10_000_000)
    dtype = serializers.ChoiceField(choices=["auto", "float32", "float16", "bfloat16"], default="auto")
    tool_call_format = serializers.ChoiceField(
        choices=ModelVersion.ToolCallFormat.choices, default=ModelVersion.ToolCallFormat.NONE
    )

    def validate_source(self, value: str) -> str:
        """Only a directory under the model root: an API caller may not have any path on the
        server read and hashed."""
        path = PurePosixPath(value)
        if path.is_absolute() or ".." in path.parts or not path.parts:
            raise serializers.ValidationError("Give a directory relative to the model root, without '..'.")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        remote = attrs["backend"] == ModelVersion.Backend.OPENAI_COMPATIBLE
        needed = ("base_url", "remote_model") if remote else ("source",)
        unwanted = ("source",) if remote else ("base_url", "remote_model", "credential_ref")
        errors = {name: "This field is required for this backend." for name in needed if not attrs.get(name)}
        errors |= {name: "Not used by this backend." for name in unwanted if attrs.get(name)}
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class CanaryInputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    weight = serializers.IntegerField(min_value=1, max_value=MAX_CANARY_WEIGHT)

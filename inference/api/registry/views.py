"""The registry API: list and create models, register versions, drive their lifecycle.

Thin over the same services the console's model pages call, so every rule is theirs: the
outbound guard on upstream addresses, credentials by allow-listed name only, separation of
duties, one production version, every change audited with the caller as its actor. Each
method needs the Django permission the console's page or action needs (a model manager's
role holds them), and an API key the `models:read` or `models:write` scope.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from django.core.exceptions import ValidationError
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound
from rest_framework.permissions import SAFE_METHODS, BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import HasScope
from accounts.models import User
from inference.api.registry.serializers import (
    CanaryInputSerializer,
    DeploymentAddInputSerializer,
    ModelCreateInputSerializer,
    ModelOutputSerializer,
    ModelServingInputSerializer,
    VersionPricesInputSerializer,
    VersionRegisterInputSerializer,
)
from inference.models import Model, ModelVersion
from inference.selectors import model_registry_get, model_registry_list
from inference.services import (
    model_canary_stop,
    model_deployment_add,
    model_register,
    model_serving_update,
    model_version_canary_start,
    model_version_prices_update,
    model_version_promote,
    model_version_register,
    model_version_register_remote,
    model_version_retire,
    model_version_rollback,
    model_version_stage,
)

# A local version's context when the request names none (the console's default too).
DEFAULT_LOCAL_CONTEXT = 2048
DEFAULT_REMOTE_CONTEXT = 8192


class RegistryPermission(BasePermission):
    """The caller's roles hold the Django permission the view names for the method."""

    message = "Only model managers and administrators may do this."

    def has_permission(self, request: Request, view: Any) -> bool:
        needed = view.needs.get(request.method or "")
        return needed is not None and bool(request.user.has_perm(needed))


class _RegistryView(APIView):
    permission_classes = [IsAuthenticated, HasScope, RegistryPermission]
    # Method -> the Django permission it needs.
    needs: ClassVar[dict[str, str]] = {}

    @property
    def required_scope(self) -> str:
        return "models:read" if self.request.method in SAFE_METHODS else "models:write"

    @property
    def actor(self) -> User:
        user = self.request.user
        assert isinstance(user, User)  # noqa: S101 - IsAuthenticated ran first
        return user


def _model_or_404(name: str) -> Model:
    model = model_registry_get(name=name)
    if model is None:
        raise NotFound(f"No model named '{name}'.")
    return model


def _version_or_404(model: Model, label: str) -> ModelVersion:
    version = model.versions.filter(label=label).first()
    if version is None:
        raise NotFound(f"Model '{model.name}' has no version '{label}'.")
    return version


def _model_answer(name: str, *, created: bool = False) -> Response:
    """The model as it is now (re-read: the action changed it)."""
    body = ModelOutputSerializer(_model_or_404(name)).data
    return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class RegistryModelListView(_RegistryView):
    """Every model with its versions; or register a new model (no versions yet)."""

    needs: ClassVar[dict[str, str]] = {"GET": "inference.view_model", "POST": "inference.add_model"}

    @extend_schema(responses={200: ModelOutputSerializer(many=True)})
    def get(self, request: Request) -> Response:
        return Response(ModelOutputSerializer(model_registry_list(), many=True).data)

    @extend_schema(request=ModelCreateInputSerializer, responses={201: ModelOutputSerializer})
    def post(self, request: Request) -> Response:
        serializer = ModelCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        model = model_register(**serializer.validated_data, actor=self.actor)
        return _model_answer(model.name, created=True)


class RegistryModelDetailView(_RegistryView):
    """One model; or change how it is served (routing among its deployments, the models it
    falls back to, its response cache)."""

    needs: ClassVar[dict[str, str]] = {"GET": "inference.view_model", "PATCH": "inference.change_model"}

    @extend_schema(responses={200: ModelOutputSerializer})
    def get(self, request: Request, model_name: str) -> Response:
        return _model_answer(model_name)

    @extend_schema(request=ModelServingInputSerializer, responses={200: ModelOutputSerializer})
    def patch(self, request: Request, model_name: str) -> Response:
        model = _model_or_404(model_name)
        serializer = ModelServingInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        model_serving_update(model=model, changes=serializer.validated_data, actor=self.actor)
        return _model_answer(model_name)


class RegistryVersionListView(_RegistryView):
    """Register a version, as a draft: a local directory under the model root, or a remote
    OpenAI-compatible upstream (its address through the outbound guard, its key by the name of
    an allow-listed variable)."""

    needs: ClassVar[dict[str, str]] = {"POST": "inference.add_modelversion"}

    @extend_schema(request=VersionRegisterInputSerializer, responses={201: ModelOutputSerializer})
    def post(self, request: Request, model_name: str) -> Response:
        model = _model_or_404(model_name)
        serializer = VersionRegisterInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if data["backend"] == ModelVersion.Backend.OPENAI_COMPATIBLE:
            model_version_register_remote(
                model=model,
                label=data["label"],
                base_url=data["base_url"],
                remote_model=data["remote_model"],
                credential_ref=data["credential_ref"],
                context_length=data.get("context_length") or DEFAULT_REMOTE_CONTEXT,
                actor=self.actor,
            )
        else:
            if not (ModelVersion(source=data["source"]).source_path / "config.json").is_file():
                raise ValidationError({"source": "No Hugging Face model directory (config.json) there."})
            model_version_register(
                model=model,
                label=data["label"],
                source=str(Path(data["source"])),
                context_length=data.get("context_length") or DEFAULT_LOCAL_CONTEXT,
                dtype=data["dtype"],
                tool_call_format=data["tool_call_format"],
                actor=self.actor,
            )
        return _model_answer(model.name, created=True)


class RegistryVersionStepView(_RegistryView):
    """One lifecycle step for a version (the URL names it): `stage` (draft → staging),
    `promote` (to production; the one before retires), `retire`."""

    _STEPS: ClassVar[dict[str, tuple[str, Callable[..., object]]]] = {
        "stage": ("inference.change_modelversion", model_version_stage),
        "promote": ("inference.promote_modelversion", model_version_promote),
        "retire": ("inference.retire_modelversion", model_version_retire),
    }
    step = ""  # set by the URL (`as_view(step=...)`)

    @property
    def needs(self) -> dict[str, str]:  # type: ignore[override]
        return {"POST": self._STEPS[self.step][0]}

    @extend_schema(request=None, responses={200: ModelOutputSerializer})
    def post(self, request: Request, model_name: str, label: str) -> Response:
        version = _version_or_404(_model_or_404(model_name), label)
        self._STEPS[self.step][1](version=version, actor=self.actor)
        return _model_answer(model_name)


class RegistryDeploymentListView(_RegistryView):
    """Another upstream for a remote draft or staging version, taking `weight` shares of its
    calls (what serves users changes through a new version, as every other change)."""

    needs: ClassVar[dict[str, str]] = {"POST": "inference.change_modelversion"}

    @extend_schema(request=DeploymentAddInputSerializer, responses={201: ModelOutputSerializer})
    def post(self, request: Request, model_name: str, label: str) -> Response:
        version = _version_or_404(_model_or_404(model_name), label)
        serializer = DeploymentAddInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        model_deployment_add(version=version, **serializer.validated_data, actor=self.actor)
        return _model_answer(model_name, created=True)


class RegistryVersionPricesView(_RegistryView):
    """Set what the version's tokens cost, per million, in the platform's currency (audited;
    from the next request on)."""

    needs: ClassVar[dict[str, str]] = {"PUT": "inference.change_modelversion"}

    @extend_schema(request=VersionPricesInputSerializer, responses={200: ModelOutputSerializer})
    def put(self, request: Request, model_name: str, label: str) -> Response:
        version = _version_or_404(_model_or_404(model_name), label)
        serializer = VersionPricesInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        model_version_prices_update(
            version=version,
            input_per_million=data["input_per_million"],
            output_per_million=data["output_per_million"],
            price_currency=data.get("currency"),
            actor=self.actor,
        )
        return _model_answer(model_name)


class RegistryVersionCanaryView(_RegistryView):
    """A staging version answers `weight` percent of conversations beside production."""

    needs: ClassVar[dict[str, str]] = {"POST": "inference.canary_modelversion"}

    @extend_schema(request=CanaryInputSerializer, responses={200: ModelOutputSerializer})
    def post(self, request: Request, model_name: str, label: str) -> Response:
        version = _version_or_404(_model_or_404(model_name), label)
        serializer = CanaryInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        model_version_canary_start(
            version=version, weight=serializer.validated_data["weight"], actor=self.actor
        )
        return _model_answer(model_name)


class RegistryModelStepView(_RegistryView):
    """`rollback`: the previous production version answers again (the current one retires);
    `canary-stop`: the canary stops answering."""

    _STEPS: ClassVar[dict[str, tuple[str, Callable[..., object]]]] = {
        "rollback": ("inference.promote_modelversion", model_version_rollback),
        "canary-stop": ("inference.canary_modelversion", model_canary_stop),
    }
    step = ""  # set by the URL

    @property
    def needs(self) -> dict[str, str]:  # type: ignore[override]
        return {"POST": self._STEPS[self.step][0]}

    @extend_schema(request=None, responses={200: ModelOutputSerializer})
    def post(self, request: Request, model_name: str) -> Response:
        self._STEPS[self.step][1](model=_model_or_404(model_name), actor=self.actor)
        return _model_answer(model_name)

"""The OpenAI-compatible surface (`/v1/`). Errors here take OpenAI's shape (gatehouse.api_errors)."""

from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import request_principal
from accounts.models import User
from inference.api.serializers import ModelEntrySerializer, ModelListSerializer
from inference.models import Model
from inference.selectors import model_get_usable, model_list_usable


def _model_entry(model: Model) -> dict[str, object]:
    return {
        "id": model.name,
        "object": "model",
        "created": int(model.created_at.timestamp()),
        "owned_by": "gatehouse",
    }


class ModelListView(APIView):
    """The models the caller may use, in OpenAI's list format."""

    required_scope = "models:read"

    @extend_schema(operation_id="listModels", responses={200: ModelListSerializer})
    def get(self, request: Request) -> Response:
        user: User = request.user  # type: ignore[assignment]
        usable = model_list_usable(user=user, api_key=request_principal(request).api_key)
        return Response({"object": "list", "data": [_model_entry(model) for model in usable]})


class ModelDetailView(APIView):
    """One model, if the caller may use it; otherwise 404, as if it did not exist."""

    required_scope = "models:read"

    @extend_schema(operation_id="retrieveModel", responses={200: ModelEntrySerializer})
    def get(self, request: Request, model_name: str) -> Response:
        user: User = request.user  # type: ignore[assignment]
        model = model_get_usable(user=user, name=model_name, api_key=request_principal(request).api_key)
        if model is None:
            raise NotFound(f"The model '{model_name}' does not exist or you do not have access to it.")
        return Response(_model_entry(model))

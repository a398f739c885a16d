"""The OpenAI-compatible surface (`/v1/`). Errors here take OpenAI's shape (gatehouse.api_errors)."""

from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import request_principal
from accounts.models import User
from inference.api.serializers import ModelEntrySerializer, ModelListSerializer
from inference.chat.models_http import MODELS_SCOPE, model_entry, model_not_found_message
from inference.selectors import model_get_usable, model_list_usable


class ModelListView(APIView):
    """The models the caller may use, in OpenAI's list format (a bearer caller's request is
    answered before Django, by `inference.chat.models_http`)."""

    required_scope = MODELS_SCOPE

    @extend_schema(operation_id="listModels", responses={200: ModelListSerializer})
    def get(self, request: Request) -> Response:
        user: User = request.user  # type: ignore[assignment]
        usable = model_list_usable(user=user, api_key=request_principal(request).api_key)
        return Response({"object": "list", "data": [model_entry(model) for model in usable]})


class ModelDetailView(APIView):
    """One model, if the caller may use it; otherwise 404, as if it did not exist."""

    required_scope = MODELS_SCOPE

    @extend_schema(operation_id="retrieveModel", responses={200: ModelEntrySerializer})
    def get(self, request: Request, model_name: str) -> Response:
        user: User = request.user  # type: ignore[assignment]
        model = model_get_usable(user=user, name=model_name, api_key=request_principal(request).api_key)
        if model is None:
            raise NotFound(model_not_found_message(model_name))
        return Response(model_entry(model))

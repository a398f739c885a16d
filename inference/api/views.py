"""The OpenAI-compatible surface (`/v1/`). Errors here take OpenAI's shape (gatehouse.api_errors)."""

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import User
from inference.selectors import model_list_usable


class ModelListView(APIView):
    """The models the caller may use, in OpenAI's list format."""

    required_scope = "models:read"

    @extend_schema(
        responses={
            200: inline_serializer(
                "ModelList",
                {
                    "object": serializers.CharField(),
                    "data": inline_serializer(
                        "ModelEntry",
                        {
                            "id": serializers.CharField(),
                            "object": serializers.CharField(),
                            "created": serializers.IntegerField(),
                            "owned_by": serializers.CharField(),
                        },
                        many=True,
                    ),
                },
            )
        }
    )
    def get(self, request: Request) -> Response:
        user: User = request.user  # type: ignore[assignment]
        models = model_list_usable(user=user)
        return Response(
            {
                "object": "list",
                "data": [
                    {
                        "id": model.name,
                        "object": "model",
                        "created": int(model.created_at.timestamp()),
                        "owned_by": "gatehouse",
                    }
                    for model in models
                ],
            }
        )

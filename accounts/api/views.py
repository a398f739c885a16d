from dataclasses import asdict

from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.serializers import TokenObtainInputSerializer, TokenPairOutputSerializer
from accounts.services import auth_tokens_obtain


class TokenObtainView(APIView):
    """Log in with a username and password; returns a JWT access and refresh token."""

    authentication_classes = []
    permission_classes = [AllowAny]

    def get_authenticate_header(self, request: Request) -> str:
        # Without a WWW-Authenticate value DRF turns a 401 into a 403.
        return 'Bearer realm="api"'

    @extend_schema(request=TokenObtainInputSerializer, responses={200: TokenPairOutputSerializer}, auth=[])
    def post(self, request: Request) -> Response:
        serializer = TokenObtainInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        pair = auth_tokens_obtain(**serializer.validated_data)
        return Response(asdict(pair))

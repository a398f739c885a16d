from dataclasses import asdict

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.serializers import (
    ApiKeyCreatedOutputSerializer,
    ApiKeyCreateInputSerializer,
    ApiKeyOutputSerializer,
    LogoutInputSerializer,
    LogoutOutputSerializer,
    TokenObtainInputSerializer,
    TokenPairOutputSerializer,
    TokenRefreshInputSerializer,
    WsTicketOutputSerializer,
)
from accounts.authentication import InteractiveLoginOnly, request_client_ip, request_principal
from accounts.models import User
from accounts.selectors import api_key_get, api_key_list
from accounts.services import (
    api_key_create,
    api_key_revoke,
    auth_logout,
    auth_tokens_obtain,
    auth_tokens_refresh,
)
from accounts.tickets import TICKET_TTL_SECONDS, ws_ticket_issue


class _PublicTokenView(APIView):
    """Credential exchanges: no prior authentication, and a stale header must not block them."""

    authentication_classes = []
    permission_classes = [AllowAny]

    def get_authenticate_header(self, request: Request) -> str:
        # Without a WWW-Authenticate value DRF turns a 401 into a 403.
        return 'Bearer realm="api"'


class TokenObtainView(_PublicTokenView):
    """Log in with a username, password and, once you have an authenticator, its one-time code.

    Returns a JWT access and refresh token. A code is good for one login. A wrong password and
    a missing or wrong code all answer 401 with the same message; repeated failures lock the
    account and the address for a while (429 with Retry-After). A recovery code may stand in
    for the one-time code. After a right password, an account whose password login is turned
    off gets 403 `password_login_disabled`; one that must have a second factor and has none
    gets 403 `otp_enrolment_required` with an `enrolment_token` for `/api/auth/2fa/totp/`.
    """

    @extend_schema(request=TokenObtainInputSerializer, responses={200: TokenPairOutputSerializer}, auth=[])
    def post(self, request: Request) -> Response:
        serializer = TokenObtainInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        pair = auth_tokens_obtain(
            username=data["username"],
            password=data["password"],
            otp=data.get("otp") or None,
            client_ip=request_client_ip(request),
        )
        return Response(asdict(pair))


class TokenRefreshView(_PublicTokenView):
    """Trade a refresh token for a new pair. The old refresh token is dead after one use."""

    @extend_schema(request=TokenRefreshInputSerializer, responses={200: TokenPairOutputSerializer}, auth=[])
    def post(self, request: Request) -> Response:
        serializer = TokenRefreshInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return Response(asdict(auth_tokens_refresh(raw_refresh=serializer.validated_data["refresh"])))


class LogoutView(APIView):
    """End a session: the given refresh token's (or this token's own), or all with `{"all": true}`."""

    permission_classes = [IsAuthenticated, InteractiveLoginOnly]

    @extend_schema(request=LogoutInputSerializer, responses={200: LogoutOutputSerializer})
    def post(self, request: Request) -> Response:
        serializer = LogoutInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user: User = request.user  # type: ignore[assignment]
        ended = auth_logout(
            user=user,
            raw_refresh=serializer.validated_data.get("refresh"),
            everywhere=serializer.validated_data["all"],
            current_family_id=request_principal(request).family_id,
        )
        return Response({"sessions_ended": ended})


class ApiKeyListView(APIView):
    """Your API keys. Creating one returns the full key once; only a hash is kept."""

    permission_classes = [IsAuthenticated, InteractiveLoginOnly]

    @extend_schema(responses={200: ApiKeyOutputSerializer(many=True)})
    def get(self, request: Request) -> Response:
        keys = api_key_list(user=request.user)  # type: ignore[arg-type]
        return Response(ApiKeyOutputSerializer(keys, many=True).data)

    @extend_schema(request=ApiKeyCreateInputSerializer, responses={201: ApiKeyCreatedOutputSerializer})
    def post(self, request: Request) -> Response:
        serializer = ApiKeyCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user: User = request.user  # type: ignore[assignment]
        key, raw = api_key_create(user=user, actor=user, **serializer.validated_data)
        key.key = raw  # type: ignore[attr-defined]  # rendered once, never stored
        return Response(ApiKeyCreatedOutputSerializer(key).data, status=status.HTTP_201_CREATED)


class ApiKeyDetailView(APIView):
    permission_classes = [IsAuthenticated, InteractiveLoginOnly]

    @extend_schema(responses={204: None})
    def delete(self, request: Request, key_id: int) -> Response:
        """Revoke one of your keys; it is refused from the next request on."""
        user: User = request.user  # type: ignore[assignment]
        key = api_key_get(user=user, key_id=key_id)
        if key is None:
            raise NotFound("No such API key.")
        api_key_revoke(api_key=key, actor=user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class WsTicketView(APIView):
    """A single-use ticket for `/ws/chat/?ticket=`, valid for seconds (browsers cannot send headers)."""

    required_scope = "chat"

    @extend_schema(request=None, responses={201: WsTicketOutputSerializer})
    def post(self, request: Request) -> Response:
        ticket = ws_ticket_issue(principal=request_principal(request))
        return Response({"ticket": ticket, "expires_in": TICKET_TTL_SECONDS}, status=status.HTTP_201_CREATED)

"""Single sign-on over the API: which providers there are, and an ID token for a session."""

from dataclasses import asdict

from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import APIException, AuthenticationFailed, PermissionDenied, Throttled
from rest_framework.exceptions import ValidationError as DrfValidationError
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.serializers import TokenPairOutputSerializer
from accounts.authentication import request_client_ip
from accounts.services.sessions import EnrolmentRequired
from sso.api.serializers import IdTokenExchangeInputSerializer, ProviderOutputSerializer
from sso.providers import oidc_provider_get, oidc_providers
from sso.refusals import SsoRefused
from sso.services import sso_tokens_obtain


class ProviderListView(APIView):
    """The configured identity providers, for clients that sign people in themselves."""

    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(responses={200: ProviderOutputSerializer(many=True)}, auth=[])
    def get(self, request: Request) -> Response:
        rows = [
            {
                "name": provider.name,
                "display_name": provider.label,
                "issuer": provider.issuer,
                "client_id": provider.client_id,
                "console_login_url": f"/auth/oidc/{provider.name}/login/",
            }
            for provider in sorted(oidc_providers().values(), key=lambda provider: provider.name)
        ]
        return Response(ProviderOutputSerializer(rows, many=True).data)


class ProviderUnavailable(APIException):
    status_code = 503
    default_code = "provider_unavailable"


def _api_error(refused: SsoRefused) -> Exception:
    """One refusal, mapped once for this door: 401 for credentials, 403 for policy, 429, 503."""
    if refused.code == "locked":
        return Throttled(wait=refused.retry_after, detail=refused.message)
    if refused.enrolment_token:
        return EnrolmentRequired(message=refused.message, enrolment_token=refused.enrolment_token)
    if refused.code in {
        "otp_enrolment_required",
        "account_disabled",
        "no_role",
        "not_provisioned",
        "username_taken",
    }:
        return PermissionDenied({"detail": refused.message, "code": refused.code})
    if refused.code == "provider_unavailable":
        return ProviderUnavailable(refused.message)
    # The code beside the message, so a client can tell "give a code" from "sign in again".
    return AuthenticationFailed({"detail": refused.message, "code": refused.code})


class IdTokenExchangeView(APIView):
    """Exchange an ID token your identity provider issued to Gatehouse for an API session.

    Sign the person in with the provider (authorization code with PKCE, Gatehouse's client
    id), then send its ID token here once, within minutes of its issue; the answer is a JWT
    access and refresh token under the same rules as a password login. The login policy
    applies: a person with an authenticator gives its `otp` unless the provider vouched for a
    second factor. 401 for a token that fails any check (signature, issuer, audience, expiry,
    age, a second use), 403 for a person who may not sign in, 429 while locked out.
    """

    authentication_classes = []
    permission_classes = [AllowAny]

    def get_authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'

    @extend_schema(
        request=IdTokenExchangeInputSerializer, responses={200: TokenPairOutputSerializer}, auth=[]
    )
    def post(self, request: Request) -> Response:
        serializer = IdTokenExchangeInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        provider = oidc_provider_get(data["provider"])
        if provider is None:
            names = ", ".join(sorted(oidc_providers())) or "none is configured"
            raise DrfValidationError({"provider": [f"No identity provider is called that ({names})."]})
        try:
            pair = sso_tokens_obtain(
                provider=provider,
                id_token=data["id_token"],
                otp=data.get("otp") or None,
                client_ip=request_client_ip(request),
            )
        except SsoRefused as refused:
            raise _api_error(refused) from None
        return Response(asdict(pair))

"""Your own second factor over the API: `/api/auth/2fa/`.

Interactive logins only (an API key cannot change how its owner logs in). Someone who must
enrol before they may log in uses the enrolment token of their 403 `otp_enrolment_required`
here, and only to read their status, start and confirm; confirming with it logs them in.
"""

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from accounts.api.serializers import (
    RecoveryCodesOutputSerializer,
    TotpConfirmedOutputSerializer,
    TotpConfirmInputSerializer,
    TotpEnrolmentOutputSerializer,
    TwoFactorProofInputSerializer,
    TwoFactorStatusOutputSerializer,
)
from accounts.authentication import EnrolmentGrant, EnrolmentTokenAuthentication, InteractiveLoginOnly
from accounts.models import User
from accounts.selectors import two_factor_status
from accounts.services.two_factor import (
    recovery_codes_regenerate,
    totp_enrolment_confirm,
    totp_enrolment_start,
    two_factor_remove,
)


class EnrolmentTokenEnrolsOnly(BasePermission):
    """An enrolment token reaches a view's `enrolment_methods`, nothing more."""

    message = "An enrolment token only enrols a second factor; log in for this."

    def has_permission(self, request: Request, view: Any) -> bool:
        if not isinstance(request.auth, EnrolmentGrant):
            return True
        return request.method in getattr(view, "enrolment_methods", ())


class _TwoFactorView(APIView):
    authentication_classes = [EnrolmentTokenAuthentication, *api_settings.DEFAULT_AUTHENTICATION_CLASSES]
    permission_classes = [IsAuthenticated, InteractiveLoginOnly, EnrolmentTokenEnrolsOnly]
    enrolment_methods: tuple[str, ...] = ()


class TwoFactorStatusView(_TwoFactorView):
    """Whether you have a second factor, whether your role requires one, and how many recovery
    codes are left."""

    enrolment_methods = ("GET",)

    @extend_schema(responses={200: TwoFactorStatusOutputSerializer})
    def get(self, request: Request) -> Response:
        user: User = request.user  # type: ignore[assignment]
        return Response(TwoFactorStatusOutputSerializer(two_factor_status(user=user)).data)


class TotpView(_TwoFactorView):
    enrolment_methods = ("POST",)

    @extend_schema(request=None, responses={201: TotpEnrolmentOutputSerializer})
    def post(self, request: Request) -> Response:
        """Start enrolling an authenticator: its otpauth:// URL and secret, shown once.

        It counts only once confirmed. Starting again replaces an unconfirmed one; with a
        confirmed authenticator already, 400 (remove it first).
        """
        enrolment = totp_enrolment_start(user=request.user)  # type: ignore[arg-type]
        return Response(TotpEnrolmentOutputSerializer(enrolment).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=TwoFactorProofInputSerializer, responses={204: None})
    def delete(self, request: Request) -> Response:
        """Remove your second factor (authenticator and recovery codes), proven with a current
        code or an unused recovery code. A wrong one is 400 and removes nothing."""
        serializer = TwoFactorProofInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        two_factor_remove(user=request.user, code=serializer.validated_data["otp"], channel="api")  # type: ignore[arg-type]
        return Response(status=status.HTTP_204_NO_CONTENT)


class TotpConfirmView(_TwoFactorView):
    enrolment_methods = ("POST",)

    @extend_schema(request=TotpConfirmInputSerializer, responses={200: TotpConfirmedOutputSerializer})
    def post(self, request: Request) -> Response:
        """Confirm the new authenticator with the code it shows; returns recovery codes, once.

        A wrong code is 400 and confirms nothing. With an enrolment token, the token is used
        up and the answer also holds `access` and `refresh`: you are logged in.
        """
        serializer = TotpConfirmInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        token = request.auth.token if isinstance(request.auth, EnrolmentGrant) else None
        confirmed = totp_enrolment_confirm(
            user=request.user,  # type: ignore[arg-type]
            code=serializer.validated_data["code"],
            enrolment_token=token,
            start_session=token is not None,
        )
        body: dict[str, Any] = {"recovery_codes": confirmed.recovery_codes}
        if confirmed.tokens is not None:
            body.update(access=confirmed.tokens.access, refresh=confirmed.tokens.refresh)
        return Response(TotpConfirmedOutputSerializer(body).data)


class RecoveryCodesView(_TwoFactorView):
    @extend_schema(request=TwoFactorProofInputSerializer, responses={201: RecoveryCodesOutputSerializer})
    def post(self, request: Request) -> Response:
        """New recovery codes, shown once; every earlier code stops working. Needs a current
        code or an unused recovery code (a wrong one is 400 and keeps the old codes)."""
        serializer = TwoFactorProofInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        codes = recovery_codes_regenerate(
            user=request.user,  # type: ignore[arg-type]
            code=serializer.validated_data["otp"],
            channel="api",
        )
        return Response(
            RecoveryCodesOutputSerializer({"recovery_codes": codes}).data, status=status.HTTP_201_CREATED
        )

"""`/api/compliance/`: data-export and erasure requests (SPEC §5).

The subject asks for themselves; compliance officers (and admins) for anyone. Others' requests
answer 404, as any object one may not see. Only a login session or access token will do, never
an API key: a leaked key must not be able to download a person's data or erase them.
"""

from typing import Any

from django.db.models import Q, QuerySet
from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from accounts.authentication import InteractiveLoginOnly
from accounts.models import User
from audit.compliance import (
    ComplianceRefused,
    ExportUnavailable,
    compliance_erasure_request,
    compliance_export_download,
    compliance_export_request,
    compliance_officer_is,
)
from audit.models import ComplianceRequest, ErasureRequest, ExportRequest

_PERMISSIONS = [*APIView.permission_classes, InteractiveLoginOnly]


class _RequestSerializer(serializers.Serializer[ComplianceRequest]):
    id = serializers.UUIDField()
    subject = serializers.SerializerMethodField(help_text="Username while the person exists.")
    subject_pseudonym = serializers.UUIDField()
    status = serializers.CharField()
    progress = serializers.IntegerField(help_text="Percent done.")
    attempts = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    due_at = serializers.DateTimeField(help_text="The legal deadline: one month after the request.")
    overdue = serializers.BooleanField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    error = serializers.CharField()

    def get_subject(self, request: ComplianceRequest) -> str | None:
        return request.subject.get_username() if request.subject else None


class ExportRequestSerializer(_RequestSerializer):
    download_url = serializers.SerializerMethodField()
    download_expires_at = serializers.DateTimeField(allow_null=True)
    file_sha256 = serializers.CharField()
    file_bytes = serializers.IntegerField(allow_null=True)

    def get_download_url(self, export: ExportRequest) -> str | None:
        if export.status != ExportRequest.Status.DONE or not export.file_name:
            return None
        return reverse("compliance-export-download", args=[export.pk], request=self.context.get("request"))


class ErasureRequestSerializer(_RequestSerializer):
    evidence = serializers.JSONField(help_text="What was deleted, revoked and pseudonymised.")


class SubjectSerializer(serializers.Serializer[None]):
    subject = serializers.CharField(
        required=False, max_length=150, help_text="Username; omit for yourself. Officers may name anyone."
    )


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


class TooSoon(APIException):
    """429 with `Retry-After` (DRF's handler writes the header from `wait`)."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_code = "too_soon"

    def __init__(self, detail: dict[str, Any], *, wait: int) -> None:
        super().__init__(detail)
        self.wait = wait


def _subject(request: Request) -> User:
    body = SubjectSerializer(data=request.data)
    body.is_valid(raise_exception=True)
    username: str | None = body.validated_data.get("subject")
    caller: User = request.user  # type: ignore[assignment]
    if not username:
        return caller
    subject: User | None = User.objects.filter(username=username).first()
    if subject is None or (subject.pk != caller.pk and not compliance_officer_is(user=caller)):
        # To a non-officer, whether someone else exists is not theirs to learn.
        raise ValidationError({"subject": [f"You cannot ask this for {username!r}."]})
    return subject


def _visible(model: type[ExportRequest] | type[ErasureRequest], user: User) -> QuerySet[Any]:
    rows = model.objects.select_related("subject")
    return rows if compliance_officer_is(user=user) else rows.filter(Q(subject=user) | Q(requested_by=user))


def _refused(refused: ComplianceRefused) -> APIException:
    """409 while one is under way; 429 and when to ask again while the last is recent."""
    if refused.existing is not None and refused.retry_after is not None:
        return TooSoon(
            {"detail": refused.message, "existing": str(refused.existing.pk)}, wait=refused.retry_after
        )
    if refused.existing is not None:
        return Conflict({"detail": refused.message, "existing": str(refused.existing.pk)})
    return ValidationError({"detail": refused.message})


class ExportRequestListView(APIView):
    permission_classes = _PERMISSIONS

    @extend_schema(responses={200: ExportRequestSerializer(many=True)})
    def get(self, request: Request) -> Response:
        rows = _visible(ExportRequest, request.user)  # type: ignore[arg-type]
        listed = ExportRequestSerializer(list(rows[:200]), many=True, context={"request": request})  # type: ignore[arg-type]
        return Response(listed.data)

    @extend_schema(
        request=SubjectSerializer,
        responses={
            202: ExportRequestSerializer,
            429: OpenApiResponse(
                OpenApiTypes.OBJECT,
                description="The person's last export is recent: `existing` names it, "
                "Retry-After says when a new one may be asked for.",
            ),
        },
    )
    def post(self, request: Request) -> Response:
        try:
            export = compliance_export_request(subject=_subject(request), requested_by=request.user)  # type: ignore[arg-type]
        except ComplianceRefused as refused:
            raise _refused(refused) from None
        export.refresh_from_db()
        return Response(ExportRequestSerializer(export, context={"request": request}).data, status=202)


class ExportRequestDetailView(APIView):
    permission_classes = _PERMISSIONS

    @extend_schema(responses={200: ExportRequestSerializer})
    def get(self, request: Request, export_id: str) -> Response:
        export = _visible(ExportRequest, request.user).filter(pk=export_id).first()  # type: ignore[arg-type]
        if export is None:
            raise NotFound("No such export.")
        return Response(ExportRequestSerializer(export, context={"request": request}).data)


class _Gone(APIException):
    status_code = status.HTTP_410_GONE


class ExportDownloadView(APIView):
    permission_classes = _PERMISSIONS

    @extend_schema(responses={200: OpenApiResponse(OpenApiTypes.BINARY, description="application/zip")})
    def get(self, request: Request, export_id: str) -> FileResponse:
        try:
            download = compliance_export_download(export_id=str(export_id), user=request.user)  # type: ignore[arg-type]
        except ExportUnavailable as unavailable:
            error = {404: NotFound, 409: Conflict, 410: _Gone}[unavailable.status]
            raise error(unavailable.message) from None
        response = FileResponse(
            download.file, as_attachment=True, filename=download.filename, content_type="application/zip"
        )
        if download.size is not None:
            response["Content-Length"] = str(download.size)
        return response


class ErasureRequestListView(APIView):
    permission_classes = _PERMISSIONS

    @extend_schema(responses={200: ErasureRequestSerializer(many=True)})
    def get(self, request: Request) -> Response:
        rows = _visible(ErasureRequest, request.user)  # type: ignore[arg-type]
        listed = ErasureRequestSerializer(list(rows[:200]), many=True)  # type: ignore[arg-type]
        return Response(listed.data)

    @extend_schema(request=SubjectSerializer, responses={202: ErasureRequestSerializer})
    def post(self, request: Request) -> Response:
        try:
            erasure = compliance_erasure_request(subject=_subject(request), requested_by=request.user)  # type: ignore[arg-type]
        except ComplianceRefused as refused:
            raise _refused(refused) from None
        erasure.refresh_from_db()
        return Response(ErasureRequestSerializer(erasure).data, status=202)


class ErasureRequestDetailView(APIView):
    permission_classes = _PERMISSIONS

    @extend_schema(responses={200: ErasureRequestSerializer})
    def get(self, request: Request, erasure_id: str) -> Response:
        erasure = _visible(ErasureRequest, request.user).filter(pk=erasure_id).first()  # type: ignore[arg-type]
        if erasure is None:
            raise NotFound("No such erasure request.")
        return Response(ErasureRequestSerializer(erasure).data)

"""The auditor API: read the trail, verify it, and take signed exports of it."""

import re
from typing import Any

from django.db import transaction
from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.generics import ListAPIView
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.roles import Role, user_holds_role
from audit.api.serializers import (
    SEQUENCE_MAX,
    AuditEventFilterSerializer,
    AuditEventSerializer,
    AuditExportQuerySerializer,
)
from audit.exports import MAX_EVENTS, ExportRangeError, audit_export_build
from audit.models import AuditEvent, VerificationRun
from audit.sealing import audit_seal_pending
from audit.selectors import audit_events_filtered, audit_head_sequence
from audit.services import audit_event_record
from audit.verification import audit_verify_run

_DIGITS = re.compile(r"[0-9]{1,19}")


class AuditReader(BasePermission):
    """Auditors and admins only (SPEC §4); everyone else gets 403."""

    message = "Only auditors and administrators may read the audit trail."

    def has_permission(self, request: Request, view: Any) -> bool:
        return user_holds_role(request.user, Role.ADMIN, Role.AUDITOR)


class _AuditView:
    required_scope = "audit:read"


class AuditEventPagination(CursorPagination):
    # A cursor keyed on the insertion order (id), which every event has from its insert (its
    # sequence comes when it is sealed): stable while new events arrive, an index seek per page.
    ordering = "-id"
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000
    invalid_cursor_message = "Invalid cursor: use the next or previous link of a page."

    def decode_cursor(self, request: Request) -> Cursor | None:
        """The cursor is the client's to hand back, not to write: one that does not decode, or
        whose position is no event id, is refused (400) before it reaches a query."""
        refusal = ValidationError({"cursor": [self.invalid_cursor_message]})
        try:
            cursor = super().decode_cursor(request)
        except NotFound:
            raise refusal from None
        if cursor is not None and cursor.position is not None and not _position_text(str(cursor.position)):
            raise refusal
        return cursor


def _position_text(text: str) -> bool:
    """`text` spells an event id: ASCII digits, within the column's range (a signed 64-bit
    integer, as the sequence's)."""
    return bool(_DIGITS.fullmatch(text)) and 1 <= int(text) <= SEQUENCE_MAX


class AuditEventListView(_AuditView, ListAPIView[AuditEvent]):
    """Events, newest first, filtered by the query string; `next`/`previous` are cursors.

    The newest may not be sealed yet: their `sequence` and `hash` are null for a moment."""

    permission_classes = [*APIView.permission_classes, AuditReader]
    serializer_class = AuditEventSerializer
    pagination_class = AuditEventPagination

    def get_queryset(self) -> Any:
        query = self.request.query_params.copy()
        for paging in ("cursor", "page_size"):
            query.pop(paging, None)
        filters = AuditEventFilterSerializer(data=query.dict())
        unknown = set(query) - set(filters.fields)
        if unknown:
            raise ValidationError({name: ["Unknown filter."] for name in sorted(unknown)})
        filters.is_valid(raise_exception=True)
        return audit_events_filtered(criteria=filters.to_filter())

    @extend_schema(parameters=[AuditEventFilterSerializer])
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class AuditVerifyView(_AuditView, APIView):
    """Seal what is pending, then walk the whole chain: links, signed checkpoints, rows not
    sealed yet (and whether any was tampered with), personal details. The run is recorded."""

    permission_classes = [*APIView.permission_classes, AuditReader]

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request) -> Response:
        return Response(audit_verify_run(source=VerificationRun.Source.API).as_dict())


class AuditExportView(_AuditView, APIView):
    """A signed zip of a contiguous stretch of the chain (see `audit.exports`). Audited."""

    permission_classes = [*APIView.permission_classes, AuditReader]

    @extend_schema(
        parameters=[AuditExportQuerySerializer],
        responses={200: OpenApiResponse(OpenApiTypes.BINARY, description="application/zip")},
    )
    def get(self, request: Request) -> FileResponse:
        query = AuditExportQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        sequence_from = query.validated_data["sequence_from"]
        # Exports hold sealed events only: seal what has committed, so "now" is in the range.
        audit_seal_pending()
        # By default up to the newest event; past the head that is an empty range, said so.
        sequence_to = query.validated_data.get("sequence_to") or max(
            sequence_from, min(audit_head_sequence(), sequence_from + MAX_EVENTS - 1)
        )
        with transaction.atomic():
            try:
                export = audit_export_build(
                    sequence_from=sequence_from,
                    sequence_to=sequence_to,
                    export_format=query.validated_data["export_format"],
                )
            except ExportRangeError as error:
                raise ValidationError({"detail": str(error)}) from error
            audit_event_record(
                action="audit.export.downloaded",
                actor=request.user,  # type: ignore[arg-type]
                metadata={
                    "format": query.validated_data["export_format"],
                    "sequence_from": export.sequence_from,
                    "sequence_to": export.sequence_to,
                },
            )
        return FileResponse(
            export.file, as_attachment=True, filename=export.filename, content_type="application/zip"
        )

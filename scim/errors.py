"""SCIM's error responses (RFC 7644 §3.12): every failure under /scim/v2/ takes this shape.

`{"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "status": "400",
"scimType": "invalidFilter", "detail": "..."}`, with the HTTP status the same as `status`.
"""

import logging
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, InterfaceError, OperationalError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response

ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"

logger = logging.getLogger(__name__)


class ScimError(Exception):
    """A request SCIM refuses: its HTTP status, SCIM error type (RFC 7644 Table 9) and why."""

    def __init__(self, status_code: int, detail: str, *, scim_type: str | None = None) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail
        self.scim_type = scim_type


def invalid_value(detail: str) -> ScimError:
    return ScimError(status.HTTP_400_BAD_REQUEST, detail, scim_type="invalidValue")


def invalid_syntax(detail: str) -> ScimError:
    return ScimError(status.HTTP_400_BAD_REQUEST, detail, scim_type="invalidSyntax")


def invalid_filter(detail: str) -> ScimError:
    return ScimError(status.HTTP_400_BAD_REQUEST, detail, scim_type="invalidFilter")


def invalid_path(detail: str) -> ScimError:
    return ScimError(status.HTTP_400_BAD_REQUEST, detail, scim_type="invalidPath")


def no_target(detail: str) -> ScimError:
    return ScimError(status.HTTP_400_BAD_REQUEST, detail, scim_type="noTarget")


def mutability(detail: str) -> ScimError:
    return ScimError(status.HTTP_400_BAD_REQUEST, detail, scim_type="mutability")


def uniqueness(detail: str) -> ScimError:
    return ScimError(status.HTTP_409_CONFLICT, detail, scim_type="uniqueness")


def not_found(resource: str) -> ScimError:
    return ScimError(status.HTTP_404_NOT_FOUND, f"No {resource} with this id.")


def validation_detail(error: DjangoValidationError) -> str:
    """A model's or service's ValidationError as one sentence a person can act on."""
    if hasattr(error, "error_dict"):
        return " ".join(
            f"{field}: {' '.join(messages)}" if field != "__all__" else " ".join(messages)
            for field, messages in error.message_dict.items()
        )
    return " ".join(error.messages)


def scim_error_body(*, status_code: int, detail: str, scim_type: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"schemas": [ERROR_SCHEMA], "status": str(status_code), "detail": detail}
    if scim_type:
        body["scimType"] = scim_type
    return body


def scim_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's exception handler for the SCIM views: every error in SCIM's shape.

    A 401 carries `WWW-Authenticate: Bearer`. A unique constraint lost to a concurrent request
    is a 409, a database that cannot be reached a 503 (nothing was saved either way); anything
    else unexpected is left to the server's 500.
    """
    headers: dict[str, str] = {}
    if isinstance(exc, ScimError):
        status_code, detail, scim_type = exc.status_code, exc.detail, exc.scim_type
    elif isinstance(exc, DjangoValidationError):
        status_code, detail, scim_type = 400, validation_detail(exc), "invalidValue"
    elif isinstance(exc, IntegrityError):
        # Two requests made the same thing at once; the loser's transaction rolled back.
        status_code, scim_type = status.HTTP_409_CONFLICT, "uniqueness"
        detail = "Another request made a resource with the same name at the same time; nothing was saved."
    elif isinstance(exc, OperationalError | InterfaceError):
        logger.error("database unavailable during %s", context.get("view"), exc_info=exc)
        status_code, scim_type = status.HTTP_503_SERVICE_UNAVAILABLE, None
        detail = "The database could not be reached, so nothing was saved; try again shortly."
    elif isinstance(exc, Http404):
        status_code, detail, scim_type = 404, "Not found.", None
    elif isinstance(exc, exceptions.APIException):
        status_code, scim_type = exc.status_code, None
        detail = str(exc.detail) if not isinstance(exc.detail, list | dict) else str(exc.get_full_details())
        if isinstance(exc, exceptions.ParseError):
            scim_type = "invalidSyntax"
        if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
            status_code = status.HTTP_401_UNAUTHORIZED
            headers["WWW-Authenticate"] = 'Bearer realm="scim"'
    else:
        return None
    return Response(
        scim_error_body(status_code=status_code, detail=detail, scim_type=scim_type),
        status=status_code,
        headers=headers,
    )

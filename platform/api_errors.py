"""One exception handler for the REST API.

Business rules in services raise Django's ValidationError; here it becomes a 400 in DRF's
shape. A database that cannot be reached (a dropped connection, even at commit) becomes a
503 that says nothing was saved: the transaction rolled back, and the client may retry.
Under /v1/ (the OpenAI-compatible surface) every error takes OpenAI's shape,
`{"error": {"message", "type", "code"}}`, so existing clients parse it. A path under /api/
or /v1/ that matches no endpoint, and a server error there, are answered as JSON too.
"""

import logging
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import Resolver404, resolve
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

logger = logging.getLogger(__name__)

_OPENAI_TYPES = {
    status.HTTP_400_BAD_REQUEST: "invalid_request_error",
    status.HTTP_401_UNAUTHORIZED: "authentication_error",
    status.HTTP_403_FORBIDDEN: "permission_error",
    status.HTTP_404_NOT_FOUND: "not_found_error",
    status.HTTP_429_TOO_MANY_REQUESTS: "rate_limit_error",
    status.HTTP_503_SERVICE_UNAVAILABLE: "server_error",
}


def _first_message(detail: Any) -> str:
    if isinstance(detail, dict):
        field, value = next(iter(detail.items()))
        message = _first_message(value)
        return message if field in ("detail", "non_field_errors") else f"{field}: {message}"
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    return str(detail)


class DatabaseUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The database could not be reached, so nothing was saved; try again shortly."
    default_code = "unavailable"


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, OperationalError | InterfaceError):
        logger.error("database unavailable during %s", context.get("view"), exc_info=exc)
        exc = DatabaseUnavailable()
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )
    response = exception_handler(exc, context)
    request = context.get("request")
    if response is None or request is None or not request.path.startswith("/v1/"):
        return response
    code = (
        getattr(exc, "default_code", None)
        if not isinstance(exc, exceptions.APIException)
        else exc.get_codes()
    )
    response.data = _openai_error(
        message=_first_message(response.data),
        error_type=_OPENAI_TYPES.get(response.status_code, "api_error"),
        code=code if isinstance(code, str) else None,
    )
    return response


def _openai_error(*, message: str, error_type: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "code": code}}


def _error_body(request: HttpRequest, *, message: str, error_type: str, code: str) -> dict[str, Any]:
    if request.path.startswith("/v1/"):
        return _openai_error(message=message, error_type=error_type, code=code)
    return {"detail": message}


@csrf_exempt  # it changes nothing; without this a cookie-bearing DELETE got the CSRF page instead
def api_not_found(request: HttpRequest, *args: Any) -> JsonResponse:
    """A path under /api/ or /v1/ that no endpoint has: 404 as JSON, with a hint for a lost slash.

    Without it Django answered with an HTML page (and, on POST, with an error about
    APPEND_SLASH), which no API client can read.
    """
    message = f"There is no API endpoint at {request.path}."
    if not request.path.endswith("/"):
        try:
            match = resolve(request.path + "/")
        except Resolver404:
            match = None
        if match is not None and match.url_name != "api-not-found":
            message += f" Did you mean {request.path}/ ?"
    return JsonResponse(
        _error_body(request, message=message, error_type="not_found_error", code="not_found"), status=404
    )


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: JSON for the API (the error is logged with its request id), a page elsewhere."""
    if request.path.startswith(("/api/", "/v1/")):
        message = "Something went wrong on our side; it has been logged. Try again later."
        return JsonResponse(
            _error_body(request, message=message, error_type="api_error", code="server_error"), status=500
        )
    return defaults.server_error(request)

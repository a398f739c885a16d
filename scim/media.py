"""`application/scim+json` in and out (RFC 7644 §3.1).

Requests may be `application/scim+json` or `application/json`; responses are always
`application/scim+json`, whatever `Accept` says, as identity providers expect.
"""

from collections.abc import Iterable
from typing import Any

from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request

from gatehouse.json_parsing import SafeJSONParser

SCIM_MEDIA_TYPE = "application/scim+json"


class ScimJSONParser(SafeJSONParser):
    media_type = SCIM_MEDIA_TYPE


class ScimJSONRenderer(JSONRenderer):
    media_type = SCIM_MEDIA_TYPE
    format = "scim"


class ScimContentNegotiation(BaseContentNegotiation):
    """Parse by the request's content type; always render SCIM's JSON."""

    def select_parser(self, request: Request, parsers: Any) -> Any:
        content_type = request.content_type.split(";")[0].strip().lower()
        return next((parser for parser in parsers if parser.media_type == content_type), None)

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers))
        return renderer, renderer.media_type

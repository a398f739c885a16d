"""Reading JSON from clients: input Python's decoder gives up on is a parse error, not a crash.

Besides plain syntax errors, the standard decoder raises RecursionError on documents nested
a few thousand levels deep and ValueError on integers longer than Python's digit limit
(4,300 digits). Left alone, the first became a 500 on every JSON endpoint and killed the
websocket consumer. Both are the client's mistake, answered like any other unreadable body.
"""

import codecs
import json
import sys
from typing import IO, Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser
from rest_framework.utils.json import strict_constant


class JsonUnreadable(ValueError):
    """The text is not a JSON document this server can read; the message says why."""


class JsonBeyondLimits(JsonUnreadable):
    """Well-formed, perhaps, but nested too deeply or with a number too long to read."""


def json_document_parse(*, text: str | bytes, strict: bool = True) -> Any:
    """Decode one JSON document; raises JsonUnreadable for anything that is not one.

    `strict` refuses NaN and Infinity, which are not JSON.
    """
    try:
        return json.loads(text, parse_constant=strict_constant if strict else None)
    except RecursionError:
        raise JsonBeyondLimits("it is nested too deeply") from None
    except json.JSONDecodeError as error:
        raise JsonUnreadable(str(error)) from None
    except ValueError as error:  # a number too long, NaN, or bytes that are not UTF-8
        if "integer string conversion" in str(error):
            limit = sys.get_int_max_str_digits()
            raise JsonBeyondLimits(f"it has a number of more than {limit} digits") from None
        raise JsonUnreadable(str(error)) from None


class SafeJSONParser(JSONParser):
    """DRF's JSON parser, with documents the decoder gives up on answered as 400 too."""

    def parse(self, stream: IO[bytes], media_type: str | None = None, parser_context: Any = None) -> Any:
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = codecs.getreader(encoding)(stream).read()
            return json_document_parse(text=text, strict=self.strict)
        except ValueError as error:  # JsonUnreadable, or a body not in its declared encoding
            raise ParseError(f"JSON parse error - {error}") from None

"""Log lines: one JSON object each, carrying the request id, with credentials masked.

The request id comes from the request context (audit.context) that the HTTP middleware,
the websocket consumer and each Celery task bind, so one id ties an HTTP request, its
websocket frames and the worker's generation or export together. Credentials are masked in
every line, whoever wrote it (uvicorn's access log prints query strings): API keys keep
their public prefix, tokens and passwords vanish. Prompts are never logged by Gatehouse.
"""

import logging
import re
from typing import Any

from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

from audit.context import request_context_current

_MASKS = (
    # gk_<prefix>_<secret>: the prefix names the key; the secret is the credential.
    (re.compile(r"\b(gk_[a-z0-9]{10}_)[A-Za-z0-9_-]+"), r"\1[masked]"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), "[masked token]"),
    (re.compile(r"(?i)\b(bearer\s+)\S+"), r"\1[masked]"),
    (re.compile(r"(?i)\b((?:token|ticket|password|api_key|key|secret)=)[^&\s\"']+"), r"\1[masked]"),
)


def credentials_masked(text: str) -> str:
    for pattern, replacement in _MASKS:
        text = pattern.sub(replacement, text)
    return text


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        context = request_context_current()
        record.request_id = context.request_id if context else "-"
        return True


class MaskCredentialsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = credentials_masked(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            # Exception messages can quote what failed to parse: mask the traceback too.
            record.exc_text = credentials_masked(logging.Formatter().formatException(record.exc_info))
        return True


class JsonFormatter(_JsonFormatter):
    """`time`, `level`, `logger`, `message`, `request_id`, then any `extra=` fields."""

    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            timestamp=False,
        )

    def formatException(self, ei: Any) -> str:  # noqa: N802 - logging's name
        formatted = super().formatException(ei)
        return credentials_masked(formatted if isinstance(formatted, str) else "\n".join(formatted))

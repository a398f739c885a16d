"""Log lines: JSON with the request id, credentials masked, and the id followed into tasks."""

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings

from audit.context import RequestContext, request_context_bound
from gatehouse.log_format import JsonFormatter, MaskCredentialsFilter, RequestIdFilter, credentials_masked


@pytest.fixture
def json_log() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger wired as the settings wire the console handler in production."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    handler.addFilter(MaskCredentialsFilter())
    logger = logging.getLogger("gatehouse.test.json")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    yield logger, stream
    logger.removeHandler(handler)


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_line_is_one_json_object_with_the_request_id(json_log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = json_log
    with request_context_bound(RequestContext(request_id="trace-7")):
        logger.info("generation %s finished", "g-1", extra={"model": "demo-tiny"})
    logger.warning("outside any request")
    inside, outside = _lines(stream)
    assert inside["message"] == "generation g-1 finished"
    assert (inside["level"], inside["logger"], inside["request_id"]) == (
        "INFO",
        "gatehouse.test.json",
        "trace-7",
    )
    assert inside["model"] == "demo-tiny"
    assert inside["time"]
    assert outside["request_id"] == "-"


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        ("auth with gk_abcdefghij_S3cretPart-xyz failed", "S3cretPart-xyz"),
        ("Authorization: Bearer abc.def.ghi", "abc.def.ghi"),
        ("token eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyIjoxfQ.c2lnbmF0dXJl", "c2lnbmF0dXJl"),
        ('"GET /ws/chat/?ticket=tkt-123&x=1 HTTP/1.1" 403', "tkt-123"),
        ("POST /api/auth/token/?password=hunter2", "hunter2"),
    ],
)
def test_credentials_are_masked(line: str, secret: str, json_log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = json_log
    logger.info(line)
    logger.info("%s", line)  # arguments are masked too, not only the format string
    assert secret not in stream.getvalue()
    assert len(_lines(stream)) == 2


def test_a_key_keeps_its_public_prefix() -> None:
    assert credentials_masked("key gk_abcdefghij_secret") == "key gk_abcdefghij_[masked]"


def test_a_traceback_is_masked(json_log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = json_log
    try:
        raise ValueError("bad key gk_abcdefghij_TopSecret1")
    except ValueError:
        logger.exception("could not parse")
    assert "TopSecret1" not in stream.getvalue()
    assert "gk_abcdefghij_[masked]" in _lines(stream)[0]["exc_info"]


def test_the_settings_wire_json_with_the_filters() -> None:
    handler = settings.LOGGING["handlers"]["console"]
    assert handler["filters"] == ["request_id", "mask_credentials"]
    # uvicorn's access log (which prints query strings) goes through the same handler.
    assert settings.LOGGING["loggers"]["uvicorn.access"]["handlers"] == ["console"]

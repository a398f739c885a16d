"""Who and where an action came from, carried alongside the request.

The HTTP middleware and the websocket consumer set it; `audit_event_record` reads it, so
services do not have to thread request details through every call.
"""

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass

_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


@dataclass(frozen=True)
class RequestContext:
    request_id: str
    client_ip: str | None = None
    user_agent: str = ""


_current: ContextVar[RequestContext | None] = ContextVar("gatehouse_request_context", default=None)


def request_id_new(*, proposed: str | None = None) -> str:
    """Keep a caller's request id when it is safe to log and echo, else make one."""
    if proposed and _SAFE_REQUEST_ID.fullmatch(proposed):
        return proposed
    return uuid.uuid4().hex


def request_context_current() -> RequestContext | None:
    return _current.get()


@contextmanager
def request_context_bound(context: RequestContext) -> Iterator[RequestContext]:
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


def request_context_push(context: RequestContext) -> Token[RequestContext | None]:
    """Bind `context` until `request_context_pop` (for hooks that cannot hold a `with`)."""
    return _current.set(context)


def request_context_pop(token: Token[RequestContext | None]) -> None:
    _current.reset(token)

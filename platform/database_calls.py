"""Database work from the event loop, on the thread Django would give it.

`sync_to_async` as Django's own views use it (thread-sensitive: a request's database calls
share one thread and its connection), with one addition for code that runs outside Django's
request cycle (the chat route in `inference.chat.asgi`), where nothing else would do it: a
connection that broke is closed after the call, so the next one opens a working one.
Connections that work are kept (Django's pool, or persistent ones), not closed per call.
"""

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.db import connections

P = ParamSpec("P")
R = TypeVar("R")


def database_sync(function: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """`function` (sync, touching the database) as an awaitable run off the event loop."""

    @wraps(function)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return function(*args, **kwargs)
        finally:
            _broken_connections_close()

    return sync_to_async(run)


def _broken_connections_close() -> None:
    for connection in connections.all(initialized_only=True):
        if connection.errors_occurred and not connection.is_usable():
            connection.close()

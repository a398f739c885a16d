"""Database work from the event loop, on the thread Django would give it.

`sync_to_async` as Django's own views use it (thread-sensitive: a request's database calls
share one thread and its connection), with one addition for code that runs outside Django's
request cycle (the chat route in `inference.chat.asgi`), where nothing else would do it: a
connection that broke is closed after the call, so the next one opens a working one.
Connections that work are kept (Django's pool, or persistent ones), not closed per call.

And the one way the request path reads governance state: from this process's caches on the
event loop (`gatehouse.local_cache`), or, after a miss, in a thread and in one transaction.
"""

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.db import connections, transaction

from gatehouse.local_cache import NotCached, local_caches_only, local_caches_trusted
from gatehouse.metrics import LOCAL_CACHE_RELOADS

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


def reloaded_in_one_transaction(function: Callable[P, R]) -> Callable[P, R]:
    """`function` (sync, reloading what this process's caches let lapse), every query it makes
    in one database transaction: its reads see one snapshot, and it commits once instead of
    once a query (autocommit). What it raises rolls its writes back.

    Each such reload is counted (`gatehouse_local_cache_reloads_total`): how often the request
    path still reaches the database. Where the caches keep nothing (no Redis, the embedded
    default: every request reads through) it runs as it is, uncounted: there each read is its own, and SQLite's write lock, which its
    transactions take at once, is not held for a request's reads.
    """

    @wraps(function)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        if not local_caches_trusted():
            return function(*args, **kwargs)
        LOCAL_CACHE_RELOADS.inc()
        with transaction.atomic():
            return function(*args, **kwargs)

    return run


async def cached_or_reloaded(function: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """`function` (sync, reading governance state through `gatehouse.local_cache`) on the event
    loop where the caches hold all it reads; after a miss (`NotCached`), again in a thread, its
    reloads in one transaction (`reloaded_in_one_transaction`).

    Entries lapse together (GATEHOUSE_LOCAL_CACHE_SECONDS), so one request a minute reloads
    a caller's key, routes, policies, budgets, teams and guardrails: one commit, not one per
    query. `function` must be safe to run twice: a miss raises before it writes anything.
    """
    try:
        with local_caches_only():
            return function(*args, **kwargs)
    except NotCached:
        return await database_sync(reloaded_in_one_transaction(function))(*args, **kwargs)

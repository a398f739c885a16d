"""Redis clients for the request path's short calls (routing counts, the response cache), and
the event loop's client of a Redis broker (`inference.broker_push`).

One client per process for threads, and one per event loop for coroutines (an asyncio
client's connections belong to the loop that made them). The short calls' clients have a short
timeout: Redis out of reach costs such a call at most that long, and its caller goes on without
it. The broker's has a longer one: a chat waits that long for its job to be queued, then fails.
"""

import asyncio
import threading
import weakref
from typing import Any

import redis
from django.conf import settings

SHORT_TIMEOUT_SECONDS = 0.5
BROKER_TIMEOUT_SECONDS = 5.0

_sync: Any = None
_sync_lock = threading.Lock()
_per_loop: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any]" = weakref.WeakKeyDictionary()
_broker_per_loop: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any]" = weakref.WeakKeyDictionary()


def redis_short() -> Any:
    """This process's client for threads (made at first use)."""
    global _sync  # noqa: PLW0603 - one client per process
    with _sync_lock:
        if _sync is None:
            _sync = redis.Redis.from_url(
                settings.REDIS_URL,
                socket_timeout=SHORT_TIMEOUT_SECONDS,
                socket_connect_timeout=SHORT_TIMEOUT_SECONDS,
            )
        return _sync


def redis_short_async() -> Any:
    """The running event loop's client (made at first use on that loop)."""
    return _loop_client(_per_loop, url=settings.REDIS_URL, timeout=SHORT_TIMEOUT_SECONDS)


def redis_broker_async() -> Any:
    """The running event loop's client of the Celery broker (CELERY_BROKER_URL, a Redis server;
    made at first use on that loop)."""
    return _loop_client(_broker_per_loop, url=settings.CELERY_BROKER_URL, timeout=BROKER_TIMEOUT_SECONDS)


def _loop_client(
    clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any]", *, url: str, timeout: float
) -> Any:
    loop = asyncio.get_running_loop()
    client = clients.get(loop)
    if client is None:
        import redis.asyncio

        client = clients[loop] = redis.asyncio.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
    return client

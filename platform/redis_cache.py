"""Django's Redis cache, with one client (and so one connection pool) per process.

Under ASGI Django makes a cache object per request context, and each of Django's own Redis
cache objects builds its own client and connection pool: every request opened fresh Redis
connections (a TCP handshake each, then closed with the request). Here the client is shared
by every cache object with the same servers and options; redis-py's pools are thread-safe
and reset themselves in a forked child.
"""

import threading
from typing import Any

from django.core.cache.backends.redis import RedisCache
from django.utils.functional import cached_property

_clients: dict[str, Any] = {}
_lock = threading.Lock()


class SharedRedisCache(RedisCache):
    @cached_property
    def _cache(self) -> Any:
        # django-stubs does not declare RedisCache's private attributes.
        servers, options = self._servers, self._options  # type: ignore[attr-defined]
        key = repr((servers, sorted(options.items())))
        with _lock:
            client = _clients.get(key)
            if client is None:
                client = _clients[key] = self._class(servers, **options)  # type: ignore[attr-defined]
        return client

"""In-process caches of governance state, dropped by every process at once when it changes.

The request path reads the same few facts on every call: who an API key or a session family
belongs to, which models a user may run and where they are served, which quota policies
apply. Held here, a request makes no database round trip for them.

A change to any of them (a key revoked, a user deactivated, a grant, a route or a policy
changed) is announced once its transaction commits (`local_caches_invalidate`) on a Redis
pub/sub channel, which every process listens to; this process drops its own at once and
again at the commit. Every cache is dropped on any announcement: changes are rare, and one
rule is easy to trust. Without Redis (the embedded default) there is no channel to hear other
processes on (a management command's change, say), so nothing is cached there.

Failure mode: a process whose subscription is down cannot know what it missed, so it does
not trust its caches: every read goes to the database until it is subscribed again, and the
caches start empty then. Entries also lapse after GATEHOUSE_LOCAL_CACHE_SECONDS, a backstop
for an announcement lost in a partition. A value loaded while an announcement arrived is
not kept (`LocalCache.put` checks the generation it was loaded under).
"""

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Generic, TypeVar, cast

from django.conf import settings
from django.db import transaction

logger = logging.getLogger(__name__)

CHANNEL = "gatehouse:local-caches:invalidate"
# How often the listener proves its connection alive, and how long a dead one takes to notice.
_PING_SECONDS = 5.0
_RETRY_SECONDS = 1.0

K = TypeVar("K")
V = TypeVar("V")


class _Bus:
    """This process's view of the announcements: a generation that moves on each, and
    whether the caches may be trusted now."""

    def __init__(self) -> None:
        self.generation = 0
        self.caches: list[LocalCache[Any, Any]] = []
        self._lock = threading.Lock()
        self._listener: threading.Thread | None = None
        self._subscribed = False

    def trusted(self) -> bool:
        if not settings.REDIS_URL:
            # No channel to hear other processes' changes on (a management command's, say):
            # the embedded default reads through.
            return False
        if self._listener is None or not self._listener.is_alive():
            self._listen_start()
        return self._subscribed

    def drop_all(self) -> None:
        with self._lock:
            self.generation += 1
            for cache in self.caches:
                cache.clear()

    def _listen_start(self) -> None:
        with self._lock:
            if self._listener is not None and self._listener.is_alive():
                return
            self._listener = threading.Thread(
                target=self._listen, name="gatehouse-cache-listener", daemon=True
            )
            self._listener.start()

    def _listen(self) -> None:
        import redis

        while True:
            try:
                client = redis.Redis.from_url(
                    settings.REDIS_URL, socket_timeout=_PING_SECONDS * 2, socket_connect_timeout=2
                )
                pubsub = client.pubsub()  # type: ignore[no-untyped-call, unused-ignore]  # typed from redis 8.2
                pubsub.subscribe(CHANNEL)
                pinged = time.monotonic()
                while True:
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None and message["type"] == "subscribe":
                        self.drop_all()  # whatever happened while away is unknown
                        self._subscribed = True
                    elif message is not None and message["type"] == "message":
                        self.drop_all()
                    if time.monotonic() - pinged > _PING_SECONDS:
                        pubsub.ping()
                        pinged = time.monotonic()
            except Exception as error:  # noqa: BLE001 - any failure: distrust, reconnect
                if self._subscribed:
                    logger.warning("local caches: invalidation channel lost (%s); reading through", error)
                self._subscribed = False
                self.drop_all()
                time.sleep(_RETRY_SECONDS)


_bus = _Bus()


class NotCached(Exception):
    """Raised instead of reading the database inside `local_caches_only()`: load it elsewhere."""


_cache_only: ContextVar[bool] = ContextVar("gatehouse_local_caches_only", default=False)


@contextmanager
def local_caches_only() -> Iterator[None]:
    """Within: a cache miss raises `NotCached` instead of loading. An event loop tries its
    work here first, and only on a miss pays a thread for the database."""
    token = _cache_only.set(True)
    try:
        yield
    finally:
        _cache_only.reset(token)


def local_cache_miss(what: str) -> None:
    """Call before work that needs the database on the request path: raises `NotCached`
    inside `local_caches_only()`."""
    if _cache_only.get():
        raise NotCached(what)


_MISSING: Any = object()


class LocalCache(Generic[K, V]):
    """A bounded map of recent values, trusted only while announcements can arrive."""

    def __init__(self, name: str, *, max_entries: int = 10_000) -> None:
        self.name = name
        self._max = max_entries
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        _bus.caches.append(self)

    def fetch(self, key: K, load: Callable[[], V], *, keep: Callable[[V], bool] | None = None) -> V:
        """The cached value for `key`, or `load()`'s (kept if `keep` allows it).

        Inside `local_caches_only()` a miss raises `NotCached` instead of loading.
        """
        cached = self._lookup(key)
        if cached is not _MISSING:
            return cast(V, cached)
        local_cache_miss(self.name)
        generation = _bus.generation
        value = load()
        if keep is None or keep(value):
            self._put(key, value, generation=generation)
        return value

    def _lookup(self, key: K) -> Any:
        if not _bus.trusted():
            return _MISSING
        entry = self._entries.get(key)
        if entry is None:
            return _MISSING
        stored_at, value = entry
        if time.monotonic() - stored_at > settings.GATEHOUSE_LOCAL_CACHE_SECONDS:
            self._entries.pop(key, None)
            return _MISSING
        return value

    def _put(self, key: K, value: V, *, generation: int) -> None:
        """Keep `value` unless an announcement arrived since `generation` was taken."""
        if generation != _bus.generation or not _bus.trusted():
            return
        self._entries[key] = (time.monotonic(), value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()


def local_caches_invalidate(*, reason: str) -> None:
    """Announce that governance state changed: every process drops its caches.

    This process drops its own now and again when the current transaction commits (at once
    outside one); the others hear it after the commit, so none reloads the old state.
    """
    _bus.drop_all()
    transaction.on_commit(lambda: _announce(reason))


def _announce(reason: str) -> None:
    _bus.drop_all()  # again: a request may have loaded the old state before the commit
    if not settings.REDIS_URL:
        return
    try:
        _publisher().publish(CHANNEL, reason)
    except Exception:
        # The other processes' subscriptions most likely broke with the same outage, and a
        # broken subscription distrusts its caches; the lapse time bounds the rest.
        logger.exception("local caches: could not announce a change (%s)", reason)


_publisher_client: Any = None


def _publisher() -> Any:
    global _publisher_client  # noqa: PLW0603 - one client per process, made on first use
    if _publisher_client is None:
        import redis

        _publisher_client = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2
        )
    return _publisher_client


def local_caches_clear() -> None:
    """Drop this process's caches (tests start each case from nothing)."""
    _bus.drop_all()


def local_caches_trusted() -> bool:
    """Whether this process keeps values now (it hears every announcement); starts listening."""
    return _bus.trusted()

"""Send one generation's events to its inbox, from the thread that generates."""

import functools
from typing import Any, Protocol

import orjson
import redis
from django.conf import settings

from inference.relay.mailbox import mailbox_local


class ReaderGone(Exception):
    """Nobody reads the inbox any more: its request ended, or its server went away."""


class EventSender(Protocol):
    """Where `generation_run` sends its events (`RelaySender`, or a test's recorder)."""

    def send(self, event: dict[str, Any]) -> None: ...


@functools.cache
def _publisher(url: str) -> redis.Redis:
    # Thread-safe: each reader thread borrows a pooled connection for its PUBLISH.
    return redis.Redis.from_url(url, socket_timeout=15, socket_connect_timeout=5, socket_keepalive=True)


class RelaySender:
    """Sends to one inbox address; on any thread but the inbox's own loop."""

    def __init__(self, *, address: str) -> None:
        self._mailbox, _, self._inbox_id = address.partition("!")

    def send(self, event: dict[str, Any]) -> None:
        """Deliver `event` without waiting for its reader.

        Raises ReaderGone when nobody reads the inbox (its request ended, its server is
        gone), and RedisError when Redis cannot be reached.
        """
        mailbox = mailbox_local(self._mailbox)
        if mailbox is not None:
            if not mailbox.inbox_is_open(self._inbox_id):
                raise ReaderGone("its request has ended")
            try:
                mailbox.loop.call_soon_threadsafe(mailbox.deliver, self._inbox_id, event)
            except RuntimeError as exc:  # the loop has closed: its server is shutting down
                raise ReaderGone(str(exc)) from exc
            return
        if not settings.REDIS_URL:
            raise ReaderGone(f"{self._mailbox} is in another process, and without Redis none is reached")
        receivers = _publisher(settings.REDIS_URL).publish(
            self._mailbox, orjson.dumps([self._inbox_id, event])
        )
        if not receivers:
            raise ReaderGone(f"nobody reads {self._mailbox}: its server has gone")

"""Deliver generation events from a generating thread to a consumer's channel.

Channel layers are asyncio code bound to an event loop, and generation is blocking torch
code on another thread. The relay hops each event onto a loop (the web server's loop for
in-process generation, a background loop in a Celery worker) and blocks until the layer
took it. When the reader's channel is full it retries until a deadline: a slow reader
slows generation down (bounded memory) and a vanished one ends it.
"""

import asyncio
import threading
import time
from typing import Any

from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer


class ReaderGone(Exception):
    """The consumer stopped reading its channel for longer than the relay waits."""


class ChannelRelay:
    def __init__(
        self,
        *,
        channel_name: str,
        loop: asyncio.AbstractEventLoop,
        full_timeout_seconds: float = 30.0,
    ) -> None:
        self._channel_name = channel_name
        self._loop = loop
        self._full_timeout = full_timeout_seconds
        self._layer = get_channel_layer()

    async def _send(self, message: dict[str, Any]) -> None:
        deadline = time.monotonic() + self._full_timeout
        while True:
            try:
                await self._layer.send(self._channel_name, message)
            except ChannelFull:
                if time.monotonic() > deadline:
                    raise ReaderGone(f"channel {self._channel_name} stayed full") from None
                await asyncio.sleep(0.01)
            else:
                return

    def send(self, message: dict[str, Any]) -> None:
        """Send from a thread that is not running `loop`; blocks until delivered."""
        sending = self._send(message)
        try:
            future = asyncio.run_coroutine_threadsafe(sending, self._loop)
        except RuntimeError as exc:  # the loop has closed: its server is shutting down
            sending.close()
            raise ReaderGone(str(exc)) from exc
        future.result(timeout=self._full_timeout + 10)


_background_loop: asyncio.AbstractEventLoop | None = None
_background_lock = threading.Lock()


def background_loop() -> asyncio.AbstractEventLoop:
    """A long-lived event loop on a daemon thread, for processes without one (Celery workers).

    One loop per process keeps the channel layer's Redis connections pooled instead of
    opening a connection per event.
    """
    global _background_loop  # noqa: PLW0603 - one loop per process, started lazily after fork
    with _background_lock:
        if _background_loop is None or _background_loop.is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="gatehouse-relay-loop", daemon=True).start()
            _background_loop = loop
        return _background_loop

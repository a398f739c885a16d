"""One reader's events: a websocket connection's (all its chats), or one /v1 request's."""

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

# How many tokens may wait in an inbox whose reader does not take them (a client that
# stopped reading its socket) before the generation sending more is stopped.
INBOX_MAX_TOKENS = 4096

# Events the relay adds itself.
# The mailbox's subscription failed: events sent meanwhile are lost.
LOST = "relay.lost"
# The reader fell INBOX_MAX_TOKENS behind: the generation was stopped, its later events dropped.
OVERFLOWED = "relay.overflowed"

Event = dict[str, Any]


class Inbox:
    """Events in the order they were sent, for one reader on one event loop.

    `deliver`, `lose` and `get` run on the inbox's loop only.
    """

    def __init__(
        self,
        *,
        address: str,
        loop: asyncio.AbstractEventLoop,
        on_overflow: Callable[[str], None],
        on_close: Callable[["Inbox"], None],
    ) -> None:
        self.address = address
        self.closed = False
        self._loop = loop
        self._events: deque[Event] = deque()
        self._waiting_tokens = 0
        self._waiter: asyncio.Future[None] | None = None
        # Generations stopped for overflowing this inbox: what they still send is dropped.
        self._stopped: set[str] = set()
        self._on_overflow = on_overflow
        self._on_close = on_close

    def deliver(self, event: Event) -> None:
        """Queue an event for the reader; a generation that overflows the inbox is stopped."""
        generation_id = str(event.get("generation_id", ""))
        if self.closed or generation_id in self._stopped:
            return
        texts = event.get("texts") or ()
        if texts and self._waiting_tokens + len(texts) > INBOX_MAX_TOKENS:
            self._stopped.add(generation_id)
            self._on_overflow(generation_id)
            event, texts = (
                {"type": OVERFLOWED, "generation_id": generation_id, "client_id": event.get("client_id")},
                (),
            )
        self._waiting_tokens += len(texts)
        self._events.append(event)
        self._wake()

    def lose(self, reason: str) -> None:
        """The events sent to this inbox can no longer arrive (the subscription failed)."""
        if not self.closed:
            self._events.append({"type": LOST, "reason": reason})
            self._wake()

    async def get(self) -> Event:
        """The next event, waiting for one."""
        while not self._events:
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        event = self._events.popleft()
        self._waiting_tokens -= len(event.get("texts") or ())
        return event

    def close(self) -> None:
        """The reader is done: later events are dropped (once)."""
        if not self.closed:
            self.closed = True
            self._events.clear()
            self._on_close(self)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

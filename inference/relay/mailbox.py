"""A web process's mailbox, one per event loop: its inboxes, and its Redis subscription.

The mailbox's name is its Redis channel; an inbox's address is `<name>!<inbox id>`. The
subscription starts with the first inbox that needs it and reads on the loop itself, so an
event reaches its inbox without a thread hop. If it fails, every open inbox is told (events
sent meanwhile are lost) and the next inbox opened subscribes again.
"""

import asyncio
import contextlib
import logging
import math
import threading
import uuid

import orjson
from asgiref.sync import sync_to_async
from django.conf import settings
from redis.asyncio import ConnectionPool
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import RedisError

from inference.cancellation import generation_cancel_request
from inference.relay.inbox import Event, Inbox

logger = logging.getLogger(__name__)

CHANNEL_PREFIX = "gatehouse:relay:"


class Mailbox:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.name = f"{CHANNEL_PREFIX}{uuid.uuid4().hex}"
        self.loop = loop
        self._inboxes: dict[str, Inbox] = {}
        self._listener: asyncio.Task[None] | None = None
        self._subscribed: asyncio.Future[None] | None = None
        self._cancels: set[asyncio.Task[None]] = set()

    def inbox_is_open(self, inbox_id: str) -> bool:
        """Whether a reader still waits on `inbox_id` (read from other threads: one dict lookup)."""
        return inbox_id in self._inboxes

    def deliver(self, inbox_id: str, event: Event) -> None:
        """On the loop: hand `event` to its inbox; an event for a closed inbox is dropped."""
        inbox = self._inboxes.get(inbox_id)
        if inbox is not None:
            inbox.deliver(event)

    async def inbox_open(self) -> Inbox:
        """A new inbox; with Redis configured, once the subscription is up (RedisError if it
        cannot be)."""
        if settings.REDIS_URL:
            await self._subscription(settings.REDIS_URL)
        inbox_id = uuid.uuid4().hex
        inbox = Inbox(
            address=f"{self.name}!{inbox_id}",
            loop=self.loop,
            on_overflow=self._overflowed,
            on_close=self._forget,
        )
        self._inboxes[inbox_id] = inbox
        return inbox

    def _forget(self, inbox: Inbox) -> None:
        self._inboxes.pop(inbox.address.rpartition("!")[2], None)

    async def _subscription(self, url: str) -> None:
        if self._listener is None or self._listener.done():
            subscribed: asyncio.Future[None] = self.loop.create_future()
            self._subscribed = subscribed
            self._listener = self.loop.create_task(self._listen(url, subscribed), name=f"relay {self.name}")
        assert self._subscribed is not None  # noqa: S101 - set together with the listener
        await asyncio.shield(self._subscribed)

    async def _listen(self, url: str, subscribed: asyncio.Future[None]) -> None:
        connection = ConnectionPool.from_url(
            url, socket_connect_timeout=5, socket_timeout=15, socket_keepalive=True
        ).make_connection()  # type: ignore[no-untyped-call]
        try:
            try:
                await connection.connect()
                await connection.send_command("SUBSCRIBE", self.name)
                await connection.read_response(push_request=True)  # the confirmation
            except (RedisError, OSError) as error:
                subscribed.set_exception(error)
                return
            subscribed.set_result(None)
            await self._read(connection)
        except (RedisError, OSError) as error:
            logger.error("relay mailbox %s lost its subscription: %s", self.name, error)
            for inbox in list(self._inboxes.values()):
                inbox.lose(f"the relay's subscription failed: {error}")
        finally:
            if not subscribed.done():
                subscribed.cancel()
            with contextlib.suppress(RedisError, OSError):
                await connection.disconnect()

    async def _read(self, connection: AbstractConnection) -> None:
        while True:
            message = await connection.read_response(timeout=math.inf, push_request=True)
            # A message is [b"message", channel, data]; anything else (a confirmation) is skipped.
            if not (isinstance(message, list) and message[:1] == [b"message"]):
                continue
            try:
                inbox_id, event = orjson.loads(message[-1])
            except (ValueError, TypeError):
                logger.warning("relay mailbox %s: dropped an unreadable message", self.name)
                continue
            self.deliver(inbox_id, event)

    def _overflowed(self, generation_id: str) -> None:
        """An inbox's reader fell too far behind: stop the generation filling it."""
        logger.warning("generation %s stopped: its reader fell too far behind", generation_id)
        cancel = sync_to_async(generation_cancel_request, thread_sensitive=False)
        task = self.loop.create_task(cancel(generation_id=generation_id))
        self._cancels.add(task)
        task.add_done_callback(self._cancel_sent)

    def _cancel_sent(self, task: "asyncio.Task[None]") -> None:
        self._cancels.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # The generation still ends at its own limits (max_tokens, max_seconds).
            logger.error("could not stop an overflowing generation: %s", task.exception())


_by_loop: dict[asyncio.AbstractEventLoop, Mailbox] = {}
_by_name: dict[str, Mailbox] = {}
_lock = threading.Lock()


def _mailbox() -> Mailbox:
    loop = asyncio.get_running_loop()
    mailbox = _by_loop.get(loop)
    if mailbox is None:
        with _lock:
            for closed in [known for known in _by_loop if known.is_closed()]:
                _by_name.pop(_by_loop.pop(closed).name, None)
            mailbox = _by_loop[loop] = Mailbox(loop)
            _by_name[mailbox.name] = mailbox
    return mailbox


async def relay_inbox_open() -> Inbox:
    """An inbox in the running loop's mailbox; its `address` goes into the generation's job."""
    return await _mailbox().inbox_open()


def mailbox_local(name: str) -> Mailbox | None:
    """The mailbox called `name` if it is in this process (any thread may ask)."""
    return _by_name.get(name)

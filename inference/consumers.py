"""`/ws/chat/`: the websocket chat protocol of SPEC §6.

The consumer only speaks the protocol: it validates frames, asks services what may run,
hands generations to the dispatcher and forwards their events as frames. Generations
write their own audit records where they run, so nothing here depends on an event
arriving for the trail to be complete.

Three sources feed the connection's one dispatch loop, in arrival order: the client's
frames, the channel layer (control messages: a credential revoked) and the connection's
relay inbox (generation events, `inference.relay`). Relay events go straight to their
handlers: the database sweep channels runs before every other message is not paid per hop.
"""

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import orjson
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from channels.utils import await_many_dispatch
from django.conf import settings
from redis.exceptions import RedisError

from accounts.credential_events import user_group
from accounts.principal import CredentialRejected, Principal, principal_recheck, principal_recheck_cached
from accounts.services.chat_quotas import quota_chat_finish_async
from accounts.websocket_auth import CLOSE_UNAUTHENTICATED, scope_client_ip
from audit.context import RequestContext, request_context_bound, request_id_new
from gatehouse.database_calls import reloaded_in_one_transaction
from gatehouse.json_parsing import JsonBeyondLimits, JsonUnreadable, json_document_parse
from gatehouse.local_cache import NotCached, local_caches_only
from gatehouse.metrics import WEBSOCKETS_OPEN
from gatehouse.tracing import tracing_on, websocket_chat_span
from guardrails.stream import answer_redaction
from inference.cancellation import generation_cancel_request
from inference.chat.admission import ChatAdmitted, chat_admit
from inference.chat.arrivals import chat_arrival_end
from inference.chat.fallback import chat_failure_falls_back, chat_fallback_admit
from inference.chat.guarding import (
    OutputGuard,
    guard_redactions_record,
    output_guard_for,
)
from inference.chat.refusal import ChatRefused
from inference.chat_slots import chat_slot_release
from inference.connection_slots import (
    RENEW_EVERY_SECONDS,
    ConnectionSlot,
    connection_slot_acquire,
    connection_slot_release,
    connection_slot_renew,
)
from inference.dispatch import InferenceBusy, generation_dispatch
from inference.engines.base import ChatMessage
from inference.generation import GenerationJob
from inference.generation_session import BROKER_LOST_MESSAGE, LOST_MESSAGE, OVERFLOW_MESSAGE
from inference.message_rate import MessageBudget, Verdict
from inference.protocol import CancelFrame, ChatFrame, ProtocolError, error_frame, frame_parse
from inference.relay import LOST, OVERFLOWED, Inbox, relay_inbox_open
from inference.selectors import conversation_get_own, conversation_history
from inference.services import ChatRejected, chat_abandon, chat_refusal_record

logger = logging.getLogger(__name__)

CLOSE_MESSAGE_TOO_BIG = 1009
CLOSE_POLICY_VIOLATION = 1008  # a message flood
CLOSE_IDLE = 4408  # no frame and nothing running for GATEHOUSE_WS_IDLE_TIMEOUT seconds
CLOSE_INTERNAL_ERROR = 1011  # the channel layer (Redis) failed under the connection
CLOSE_TOO_MANY_CONNECTIONS = 4429  # the user already holds GATEHOUSE_WS_MAX_CONNECTIONS_PER_USER
WATCHDOG_INTERVAL_SECONDS = 0.5
# How long a connection finding every place held waits for one to free before it is refused.
SLOT_GRACE_SECONDS = 1.0
SLOT_RETRY_SECONDS = 0.1


@dataclass
class _RunningChat:
    generation_id: str
    job: GenerationJob
    # When the last event for this chat arrived (or when it was dispatched, before any).
    last_event_at: float
    # The chat of the model the client asked for (its fallbacks are admitted from it).
    asked: ChatAdmitted
    started: bool = False
    # Whether any of its tokens reached the client (then no other model may answer instead).
    sent: bool = False
    # Its answer's redaction where its guardrails say so (`inference.chat.guarding`), and then
    # the index of the next token frame (a released piece is one frame).
    output: OutputGuard | None = None
    next_index: int = 0


@dataclass(frozen=True)
class _History:
    model_name: str
    messages: list[ChatMessage]


class ChatConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Run the connection; if Redis fails under it, end it cleanly (`_channel_layer_lost`)."""
        try:
            self.inbox: Inbox = await relay_inbox_open()
            try:
                await self._serve(scope, receive, send)
            finally:
                self.inbox.close()
        except RedisError as error:
            await self._channel_layer_lost(error)

    async def _serve(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """channels' AsyncConsumer.__call__, with the relay inbox as a third source."""
        self.scope = scope
        self.base_send = send
        sources: list[Callable[[], Awaitable[dict[str, Any]]]] = [receive, self.inbox.get]
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        if self.channel_layer is not None:
            self.channel_name = await self.channel_layer.new_channel()
            self.channel_receive = functools.partial(self.channel_layer.receive, self.channel_name)
            sources.append(self.channel_receive)
        with contextlib.suppress(StopConsumer):
            await await_many_dispatch(sources, self.dispatch)

    async def dispatch(self, message: dict[str, Any]) -> None:
        relayed = self._relay_handlers.get(message["type"])
        if relayed is None:
            await super().dispatch(message)
        else:
            await relayed(self, message)

    @classmethod
    async def encode_json(cls, content: Any) -> str:
        return orjson.dumps(content).decode()

    async def connect(self) -> None:
        # accounts.websocket_auth.RequireChatCredentials admitted only authenticated callers
        # allowed to chat; they arrive here with a user and a principal naming the credential
        # (JWT session, console session, API key, or the ticket's issuer) the connection hangs
        # on. A principal that hangs on nothing is refused at its first re-check.
        user = self.scope["user"]
        self.principal: Principal = self.scope.get("principal") or Principal(user=user, method="session")
        self.user = user
        # Open connections per user are bounded across every process (a lease each, in the cache).
        per_user = settings.GATEHOUSE_WS_MAX_CONNECTIONS_PER_USER
        self.connection_slot: ConnectionSlot | None = await self._connection_slot_take(limit=per_user)
        if self.connection_slot is None:
            # Accepted only to say why: a refusal before accepting reaches the client as a bare 403.
            message = f"You already have {per_user} chat connections open; close one first."
            await self.accept()
            await self._send_error(None, "rate_limited", message)
            await self.close(code=CLOSE_TOO_MANY_CONNECTIONS, reason=message)
            return
        self.slot_renewed_at = time.monotonic()
        self.running: dict[str, _RunningChat] = {}
        self.budget = MessageBudget(
            per_window=settings.GATEHOUSE_WS_MESSAGES_PER_WINDOW,
            window_seconds=settings.GATEHOUSE_WS_MESSAGE_WINDOW_SECONDS,
        )
        self.last_frame_at = time.monotonic()
        self.watchdog = asyncio.create_task(self._watch())
        headers = dict(self.scope.get("headers", []))
        self.request_context = RequestContext(
            request_id=request_id_new(proposed=headers.get(b"x-request-id", b"").decode("latin-1")),
            client_ip=scope_client_ip(self.scope),
            user_agent=headers.get(b"user-agent", b"").decode("latin-1")[:512],
        )
        # Revoking a key, ending sessions or deactivating the account reaches this group.
        self.user_group = user_group(user_id=user.pk)
        await self.channel_layer.group_add(self.user_group, self.channel_name)
        await self.accept()
        WEBSOCKETS_OPEN.inc()
        self.counted_open = True

    async def disconnect(self, code: int) -> None:
        # The place first: a client that closed may be opening its next connection already.
        await self._connection_slot_give_back()
        # Running generations see the cancel flag, stop, and audit themselves as cancelled.
        self._stop_watching()
        if hasattr(self, "user_group"):
            # With the layer away, the membership expires with the group.
            with contextlib.suppress(RedisError):
                await self.channel_layer.group_discard(self.user_group, self.channel_name)
        for client_id, chat in list(getattr(self, "running", {}).items()):
            await database_sync_to_async(generation_cancel_request)(generation_id=chat.generation_id)
            await self._forget(client_id)

    # --- client frames -------------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if not hasattr(self, "budget"):
            return  # refused at the handshake and closing: nothing is read
        # Logs written while handling a frame carry the connection's request id.
        with request_context_bound(self.request_context):
            await self._receive(text_data)

    async def _receive(self, text_data: str | None) -> None:
        self.last_frame_at = time.monotonic()
        verdict = self.budget.spend()
        if verdict is Verdict.FLOOD:
            await self.close(code=CLOSE_POLICY_VIOLATION)
            return
        if verdict is Verdict.REFUSE:
            await self._send_error(None, "rate_limited", "Too many messages on this connection; slow down.")
            return
        if text_data is None:
            await self._send_error(None, "invalid", "Frames must be JSON text, not binary.")
            return
        if len(text_data.encode()) > settings.GATEHOUSE_WS_MAX_FRAME_BYTES:
            await self.close(code=CLOSE_MESSAGE_TOO_BIG)
            return
        try:
            frame = frame_parse(json_document_parse(text=text_data))
        except JsonUnreadable as unreadable:
            why = f": {unreadable}" if isinstance(unreadable, JsonBeyondLimits) else ""
            await self._send_error(None, "invalid", f"The frame is not valid JSON{why}.")
            return
        except ProtocolError as error:
            await self._send_error(error.client_id, error.code, error.message)
            return
        if isinstance(frame, CancelFrame):
            await self._cancel(frame)
        elif tracing_on():
            with websocket_chat_span(chat_id=frame.id, model=frame.model):
                await self._start(frame)
        else:
            await self._start(frame)

    async def _start(self, frame: ChatFrame) -> None:
        # A long-lived connection must not outlive its credentials: check them on every chat.
        try:
            self.principal = await self._principal_rechecked()
        except CredentialRejected as rejected:
            await self._send_error(frame.id, "forbidden", rejected.message)
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.user = self.principal.user
        try:
            conversation_id, history, admitted = await self._admit(frame)
        except ChatRejected as rejected:  # decided here: recorded here
            await database_sync_to_async(chat_refusal_record)(
                user=self.user,
                api_key=self.principal.api_key,
                channel="websocket",
                model_name=frame.model,
                code=rejected.detail_code,
                reason=rejected.message,
            )
            await self._send_error(frame.id, rejected.code, rejected.message)
            return
        except ChatRefused as refused:  # the pipeline's admission recorded it
            await self._send_error(frame.id, refused.protocol_code or refused.code, refused.message)
            return
        new_messages_from = len(history.messages) if history else 0
        # No stored history: the id was named for this chat, and its exchange starts it.
        conversation_new = history is None
        if await self._dispatch(
            frame.id,
            admitted,
            conversation_id=conversation_id,
            new_messages_from=new_messages_from,
            conversation_new=conversation_new,
        ):
            return
        if not await self._fall_back(
            frame.id,
            asked=admitted,
            after=None,
            conversation_id=conversation_id,
            new_messages_from=new_messages_from,
            conversation_new=conversation_new,
        ):
            await self._send_error(frame.id, "unavailable", "The model is busy; try again shortly.")

    async def _dispatch(
        self,
        client_id: str,
        admitted: ChatAdmitted,
        *,
        conversation_id: str,
        new_messages_from: int,
        conversation_new: bool,
        asked: ChatAdmitted | None = None,
    ) -> bool:
        """Queue an admitted chat and tell the client it started, naming the model that answers
        (`asked`: the chat of the model the client asked for, where this is its fallback).
        False when the model's queue is full (the chat abandoned, nothing sent)."""
        plan = admitted.plan
        job = GenerationJob(
            generation_id=admitted.generation_id,
            client_id=client_id,
            reply_channel=self.inbox.address,
            version_id=plan.version_id,
            model_name=plan.model_name,
            messages=admitted.messages,
            user_id=self.user.pk,
            api_key_id=self.principal.api_key.pk if self.principal.api_key else None,
            params=plan.params.to_payload(),
            request_id=self.request_context.request_id,
            client_ip=self.request_context.client_ip,
            enqueued_at=admitted.admitted_at,
            conversation_id=conversation_id,
            new_messages_from=new_messages_from,
            conversation_new=conversation_new,
            quota=admitted.hold.quota.to_payload(),
            remote=plan.remote,
            fallback_from=admitted.fallback_from,
            redaction=answer_redaction(admitted.guard),
            arriving_with=chat_arrival_end(admitted.arrival),
        )
        self.running[client_id] = _RunningChat(
            generation_id=job.generation_id,
            job=job,
            last_event_at=time.monotonic(),
            asked=asked or admitted,
            output=output_guard_for(admitted.guard),
        )
        try:
            await generation_dispatch(job=job)
        except InferenceBusy as busy:
            await self._forget(client_id)
            await database_sync_to_async(chat_abandon)(job=job, reason=f"queue full: {busy}")
            return False
        # Events of this generation are handled only after this handler returns, so `start`
        # still reaches the client before the first token.
        start = {
            "type": "start",
            "id": client_id,
            "model": plan.model_name,
            "version": plan.version_label,
            "conversation": conversation_id,
        }
        if admitted.fallback_from:
            start["fallback_from"] = admitted.fallback_from
        await self.send_json(start)
        return True

    async def _fall_back(
        self,
        client_id: str,
        *,
        asked: ChatAdmitted,
        after: str | None,
        conversation_id: str,
        new_messages_from: int,
        conversation_new: bool,
    ) -> bool:
        """The asked model could not answer before its first token: its next fallback the user
        may use (after `after`, one tried already) is queued, its own `start` sent. False when
        none is (the caller tells the client the asked model's error)."""
        while (fallback := await chat_fallback_admit(asked, after=after)) is not None:
            queued = await self._dispatch(
                client_id,
                fallback,
                conversation_id=conversation_id,
                new_messages_from=new_messages_from,
                conversation_new=conversation_new,
                asked=asked,
            )
            if queued:
                return True
            after = fallback.plan.model_name
        return False

    async def _principal_rechecked(self) -> Principal:
        """From the caches the /v1 door trusts when they hold the credential; else the database."""
        try:
            with local_caches_only():
                return principal_recheck_cached(self.principal)
        except NotCached:
            rechecked: Principal = await database_sync_to_async(
                reloaded_in_one_transaction(principal_recheck_cached)
            )(self.principal)
            return rechecked

    async def _admit(self, frame: ChatFrame) -> tuple[str, "_History | None", ChatAdmitted]:
        """Whether the chat may start: this connection's limits, the conversation it continues,
        then the pipeline's admission (`inference.chat.admission`: the chat slot and quotas).

        Raises ChatRejected for what is decided here, ChatRefused for what admission refused
        (and recorded). Nothing is held after either.
        """
        if frame.id in self.running:
            raise ChatRejected("A chat with this id is already running.", code="invalid")
        per_connection = settings.GATEHOUSE_WS_MAX_CONCURRENT_CHATS
        if len(self.running) >= per_connection:
            raise ChatRejected(
                f"At most {per_connection} chats may run at once on one connection.", code="rate_limited"
            )
        if frame.conversation is None:
            conversation_id, history = str(uuid.uuid4()), None
        else:
            conversation_id, history = await database_sync_to_async(self._conversation)(frame.conversation)
        admitted = await chat_admit(
            principal=self.principal,
            frame=replace(frame, messages=(history.messages if history else []) + frame.messages),
            request_id=self.request_context.request_id,
            client_ip=self.request_context.client_ip,
            channel="websocket",
            sticky_key=f"{self.user.pk}:{conversation_id}",
        )
        if history is not None and history.model_name != admitted.plan.model_name:
            chat_arrival_end(admitted.arrival)
            await quota_chat_finish_async(hold=admitted.hold)
            raise ChatRejected(
                f"This conversation is with {history.model_name}; continue it there.", code="invalid"
            )
        return conversation_id, history, admitted

    def _conversation(self, conversation_id: str) -> tuple[str, "_History"]:
        """A stored conversation of this user's, to continue."""
        conversation = conversation_get_own(user=self.user, conversation_id=conversation_id)
        if conversation is None:
            raise ChatRejected(
                f"Conversation '{conversation_id}' does not exist or is not yours.", code="not_found"
            )
        return str(conversation.pk), _History(
            model_name=conversation.model.name, messages=conversation_history(conversation=conversation)
        )

    async def _cancel(self, frame: CancelFrame) -> None:
        chat = self.running.get(frame.id)
        if chat is None:
            await self._send_error(frame.id, "not_found", "No chat with this id is running.")
            return
        await database_sync_to_async(generation_cancel_request)(generation_id=chat.generation_id)

    # --- generation events (from the relay inbox) -----------------------------------------------

    def _current(self, event: dict[str, Any]) -> _RunningChat | None:
        chat = self.running.get(event["client_id"])
        # A late event of an earlier chat that reused this client id (or of one given up) is dropped.
        if chat is None or chat.generation_id != event["generation_id"]:
            return None
        chat.last_event_at = time.monotonic()
        chat.started = True
        return chat

    async def generation_tokens(self, event: dict[str, Any]) -> None:
        """One event may carry several tokens, each its own frame (SPEC §6), or none: a heartbeat."""
        chat = self._current(event)
        if chat is None:
            return
        chat.sent = chat.sent or bool(event["texts"])
        client_id, first = event["client_id"], event["index"]
        if chat.output is not None:
            if released := chat.output.release(event["texts"]):
                await self._guarded_token(chat, client_id, released)
            return
        for offset, text in enumerate(event["texts"]):
            await self.send_json({"type": "token", "id": client_id, "index": first + offset, "text": text})

    async def _guarded_token(self, chat: _RunningChat, client_id: str, text: str) -> None:
        await self.send_json({"type": "token", "id": client_id, "index": chat.next_index, "text": text})
        chat.next_index += 1

    async def generation_finished(self, event: dict[str, Any]) -> None:
        chat = self._current(event)
        if chat is None:
            return
        client_id = event["client_id"]
        if chat.output is not None:
            if rest := chat.output.release_rest():
                await self._guarded_token(chat, client_id, rest)
            await guard_redactions_record(
                user=self.user,
                api_key=self.principal.api_key,
                guard=chat.output.guard,
                direction="answer",
                redacted=chat.output.redacted,
                model=chat.job.model_name,
                generation_id=chat.generation_id,
            )
        await self._forget(client_id)
        usage = {
            "prompt_tokens": event["prompt_tokens"],
            "completion_tokens": event["completion_tokens"],
            "total_tokens": event["prompt_tokens"] + event["completion_tokens"],
        }
        await self.send_json(
            {"type": "done", "id": client_id, "finish_reason": event["finish_reason"], "usage": usage}
        )

    async def generation_failed(self, event: dict[str, Any]) -> None:
        """The chat failed: where nothing reached the client and the model it asked for has
        fallbacks, the next is asked (a second `start` names it); else the client is told."""
        chat = self._current(event)
        if chat is None:
            return
        client_id, job = event["client_id"], chat.job
        await self._forget(client_id)
        if (
            not chat.sent
            and chat_failure_falls_back(event["code"], admitted=chat.asked)
            and await self._fall_back(
                client_id,
                asked=chat.asked,
                after=job.model_name if job.fallback_from else None,
                conversation_id=job.conversation_id or "",
                new_messages_from=job.new_messages_from,
                conversation_new=job.conversation_new,
            )
        ):
            return
        await self._send_error(client_id, event["code"], event["message"])

    async def relay_overflowed(self, event: dict[str, Any]) -> None:
        """The client fell too far behind this chat's tokens: the relay stopped its generation,
        which records itself as cancelled."""
        if self._current(event) is None:
            return
        client_id = event["client_id"]
        await self._forget(client_id)
        await self._send_error(client_id, "unavailable", OVERFLOW_MESSAGE)

    async def relay_lost(self, event: dict[str, Any]) -> None:
        """The relay's Redis subscription failed: handled as the channel layer failing."""
        await self._channel_layer_lost(RedisError(event["reason"]))

    _relay_handlers: dict[str, Callable[["ChatConsumer", dict[str, Any]], Awaitable[None]]] = {
        "generation.tokens": generation_tokens,
        "generation.finished": generation_finished,
        "generation.failed": generation_failed,
        OVERFLOWED: relay_overflowed,
        LOST: relay_lost,
    }

    async def credentials_changed(self, event: dict[str, Any]) -> None:
        """A key was revoked or sessions ended for this user: re-check now, close if refused."""
        try:
            self.principal = await database_sync_to_async(principal_recheck)(self.principal)
        except CredentialRejected as rejected:
            await self._send_error(None, "forbidden", rejected.message)
            await self.close(code=CLOSE_UNAUTHENTICATED)
            # disconnect() cancels what was running once the close completes.

    # --- lost generations ----------------------------------------------------------------------

    async def _watch(self) -> None:
        """Give up on generations that went silent (no worker took them, or it died
        mid-stream), and close a connection idle for too long."""
        while True:
            await asyncio.sleep(WATCHDOG_INTERVAL_SECONDS)
            now = time.monotonic()
            if not self.running and now - self.last_frame_at > settings.GATEHOUSE_WS_IDLE_TIMEOUT:
                await self.close(code=CLOSE_IDLE)
                return
            if now - self.slot_renewed_at > RENEW_EVERY_SECONDS and self.connection_slot is not None:
                self.slot_renewed_at = now
                with contextlib.suppress(RedisError):  # the next renewal tries again
                    await database_sync_to_async(connection_slot_renew)(slot=self.connection_slot)
            for client_id, chat in list(self.running.items()):
                allowed = (
                    settings.GATEHOUSE_GENERATION_STALL_TIMEOUT
                    if chat.started
                    else settings.GATEHOUSE_GENERATION_START_TIMEOUT
                )
                if now - chat.last_event_at > allowed:
                    await self._give_up(client_id, chat)

    async def _give_up(self, client_id: str, chat: _RunningChat) -> None:
        await self._forget(client_id)
        await database_sync_to_async(chat_abandon)(
            job=chat.job,
            reason="the model worker stopped responding"
            if chat.started
            else "no model worker took the request",
        )
        await self._send_error(client_id, "unavailable", LOST_MESSAGE)

    async def _channel_layer_lost(self, error: BaseException) -> None:
        """Redis went away under the connection (the channel layer, or the relay): no event can
        reach it any more.

        Each running chat is given up (audited; its quota and slot come back once Redis
        does) and told so, then the connection closes with 1011, so the client knows at
        once rather than after a silence. It may reconnect when the service is back.
        """
        logger.error(
            "websocket %s: the channel layer failed", getattr(self, "channel_name", "?"), exc_info=error
        )
        self._stop_watching()
        for client_id, chat in list(getattr(self, "running", {}).items()):
            await self._forget(client_id)
            await database_sync_to_async(chat_abandon)(
                job=chat.job, reason=f"the channel layer failed: {error}"
            )
            await self._client_send(
                error_frame(code="unavailable", message=BROKER_LOST_MESSAGE, client_id=client_id)
            )
        await self._connection_slot_give_back()
        await self._client_send({"type": "websocket.close", "code": CLOSE_INTERNAL_ERROR}, raw=True)

    async def _client_send(self, message: dict[str, Any], *, raw: bool = False) -> None:
        """Best effort: the client may have gone too."""
        try:
            if raw:
                await self.base_send(message)
            else:
                await self.send_json(message)
        except Exception:  # noqa: BLE001 - a client that left cannot be told; nothing else to do
            logger.info(
                "websocket %s: the client left before it was told", getattr(self, "channel_name", "?")
            )

    # --- helpers -------------------------------------------------------------------------------

    def _stop_watching(self) -> None:
        """The connection is ending: uncount it and stop its watchdog (once; connect may not
        have got that far)."""
        if getattr(self, "counted_open", False):
            WEBSOCKETS_OPEN.dec()
            self.counted_open = False
        if hasattr(self, "watchdog"):
            self.watchdog.cancel()

    async def _connection_slot_take(self, *, limit: int) -> ConnectionSlot | None:
        """One of the user's places, or None once every place stayed held for the grace.

        The server frees a closed connection's place only after the close handshake, so a
        client that closes one and opens the next at once can find every place still held
        for a moment; a full house is asked again until SLOT_GRACE_SECONDS have passed.
        """
        deadline = time.monotonic() + SLOT_GRACE_SECONDS
        while True:
            slot: ConnectionSlot | None = await database_sync_to_async(connection_slot_acquire)(
                user_id=self.user.pk, limit=limit
            )
            if slot is not None or time.monotonic() >= deadline:
                return slot
            await asyncio.sleep(SLOT_RETRY_SECONDS)

    async def _connection_slot_give_back(self) -> None:
        """Once: the connection's place among the user's open connections. With the cache
        away the lease is left to expire."""
        slot, self.connection_slot = getattr(self, "connection_slot", None), None
        if slot is not None:
            with contextlib.suppress(RedisError):
                await database_sync_to_async(connection_slot_release)(slot=slot)

    async def _forget(self, client_id: str) -> None:
        """A chat ended (or never started): stop tracking it and give back the user's slot."""
        if self.running.pop(client_id, None) is not None:
            await database_sync_to_async(chat_slot_release)(user_id=self.user.pk)

    async def _send_error(self, client_id: str | None, code: str, message: str) -> None:
        await self.send_json(error_frame(code=code, message=message, client_id=client_id))

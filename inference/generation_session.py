"""One generation driven from one coroutine: dispatch it, then read its events in order.

The websocket consumer multiplexes many generations on its connection's relay inbox. An
HTTP request (/v1/chat/completions) runs one generation on an inbox of its own, read here,
with the same watchdog rules: a generation nobody starts, or that goes silent, is given up
as lost, audited, and reported as `GenerationLost`.
"""

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from inference.cancellation import generation_cancel_request
from inference.chat_slots import chat_slot_release
from inference.dispatch import generation_dispatch
from inference.generation import GenerationJob
from inference.relay import LOST, OVERFLOWED, Inbox, relay_inbox_open
from inference.services import chat_abandon

_FINAL_EVENTS = ("generation.finished", "generation.failed")


LOST_MESSAGE = "The model did not respond in time; try again."
BROKER_LOST_MESSAGE = "The service lost its connection to the model mid-answer; try again."
OVERFLOW_MESSAGE = "The answer was stopped: its tokens were not being read."


class GenerationLost(Exception):
    """No worker took the generation, its worker stopped answering, the relay failed, or the
    client stopped reading (the generation was stopped).

    `client_message` is what the client is told.
    """

    def __init__(self, reason: str, *, client_message: str = LOST_MESSAGE) -> None:
        super().__init__(reason)
        self.client_message = client_message


class GenerationSession:
    def __init__(self, make_job: Callable[[str], GenerationJob]) -> None:
        """`make_job` builds the job for the inbox address this session reads."""
        self._make_job = make_job
        self._inbox: Inbox | None = None
        self.job: GenerationJob | None = None
        self.ended = False
        self.released = False

    async def start(self) -> GenerationJob:
        """Dispatch the generation; raises `InferenceBusy` when the model's queue is full."""
        self._inbox = await relay_inbox_open()
        self.job = self._make_job(self._inbox.address)
        await generation_dispatch(job=self.job)
        return self.job

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """The generation's events up to its final one (`generation.finished` or `.failed`)."""
        job, inbox = self.job, self._inbox
        assert job is not None, "start() first"  # noqa: S101 - a programming error, not input
        assert inbox is not None  # noqa: S101 - start() opens it before making the job
        started = False
        while True:
            allowed = (
                settings.GATEHOUSE_GENERATION_STALL_TIMEOUT
                if started
                else settings.GATEHOUSE_GENERATION_START_TIMEOUT
            )
            try:
                async with asyncio.timeout(allowed):
                    event = await inbox.get()
            except TimeoutError:
                reason = (
                    "the model worker stopped responding" if started else "no model worker took the request"
                )
                await self._abandon(job, reason)
                raise GenerationLost(reason) from None
            if event["type"] == LOST:
                # Redis went away under the relay: the events can no longer arrive. The
                # worker's relay fails on the same outage and stops the generation.
                await self._abandon(job, event["reason"])
                raise GenerationLost(event["reason"], client_message=BROKER_LOST_MESSAGE)
            if event.get("generation_id") != job.generation_id:
                continue
            if event["type"] == OVERFLOWED:
                # The generation was stopped (its cancel flag) and records itself as cancelled.
                self.ended = True
                raise GenerationLost("the client did not read its stream", client_message=OVERFLOW_MESSAGE)
            started = True
            if event["type"] in _FINAL_EVENTS:
                self.ended = True
            yield event
            if self.ended:
                return

    async def _abandon(self, job: GenerationJob, reason: str) -> None:
        self.ended = True
        await database_sync_to_async(chat_abandon)(job=job, reason=reason)

    async def release(self) -> None:
        """Give back the user's chat slot taken for this generation (once)."""
        if self.job is not None and not self.released:
            self.released = True
            await database_sync_to_async(chat_slot_release)(user_id=self.job.user_id)

    async def cancel(self) -> None:
        """Stop a generation whose reader left before its end (the client hung up); either way,
        nothing reads its inbox any more."""
        if self._inbox is not None:
            self._inbox.close()
        if self.job is not None and not self.ended:
            self.ended = True
            await database_sync_to_async(generation_cancel_request)(generation_id=self.job.generation_id)

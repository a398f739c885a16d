"""A request for several choices (OpenAI's `n`): each choice is a chat of its own.

Each is admitted (a request against the rate limits, a chat slot, its tokens reserved), run,
charged and recorded like a request for one, under the same request id, so the trail and
the quotas see every generation the request caused; the choices run at the same time (a
local model batches them). A request for one choice takes none of the detours here.

Failure mode: a choice refused at admission gives back what the choices before it took and
refuses the request; a choice that fails while running cancels the others (each records
itself as cancelled) and its refusal is the request's.
"""

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from accounts.principal import Principal
from accounts.services.chat_quotas import quota_chat_finish_async
from inference.chat.admission import ChatAdmitted, chat_admit
from inference.chat.arrivals import chat_arrival_end
from inference.protocol import ChatFrame

_Result = TypeVar("_Result")


async def choices_admit(
    *, principal: Principal, frame: ChatFrame, request_id: str, client_ip: str | None, channel: str
) -> list[ChatAdmitted]:
    """One admission per choice the frame asks for; raises the first `ChatRefused`."""
    admitted: list[ChatAdmitted] = []
    try:
        for _ in range(frame.choices):
            admitted.append(
                await chat_admit(
                    principal=principal,
                    frame=frame,
                    request_id=request_id,
                    client_ip=client_ip,
                    channel=channel,
                )
            )
    except BaseException:
        await asyncio.shield(_holds_give_back(admitted))
        raise
    return admitted


async def _holds_give_back(admitted: list[ChatAdmitted]) -> None:
    """What admitted choices that will never run hold goes back (nothing is charged), and they
    no longer count as arriving."""
    for choice in admitted:
        chat_arrival_end(choice.arrival)
    await asyncio.gather(*(quota_chat_finish_async(hold=choice.hold) for choice in admitted))


async def choices_run(
    admitted: list[ChatAdmitted], run: Callable[[int, ChatAdmitted], Awaitable[_Result]]
) -> list[_Result]:
    """`run` each choice (with its index) at once; their results in order, or the first
    failure once the others are cancelled and have ended."""
    if len(admitted) == 1:
        return [await run(0, admitted[0])]
    started: set[int] = set()

    async def run_noted(index: int, choice: ChatAdmitted) -> _Result:
        started.add(index)
        return await run(index, choice)

    tasks = [asyncio.ensure_future(run_noted(index, choice)) for index, choice in enumerate(admitted)]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        # The caller left, or a choice failed: the rest stop, and end before we go on. A choice
        # cancelled before it began never ran its own ending: what it holds goes back here.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        unstarted = [choice for index, choice in enumerate(admitted) if index not in started]
        await asyncio.shield(_holds_give_back(unstarted))
    for task in tasks:
        if not task.cancelled() and (error := task.exception()) is not None:
            raise error
    return [task.result() for task in tasks]

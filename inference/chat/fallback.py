"""Fallback models: when a model cannot answer before its first token, the models it names
(`Model.fallback_models`) are asked in turn, each as if the caller had asked for it.

Each fallback is admitted through the pipeline's own admission (`chat_admit`): the caller's
access to it, its limits and every quota are checked, and a refusal is audited there. A
fallback the caller may not use, or whose quota is spent, is passed over; when none answers,
the caller gets the original model's error, never a fallback's (which would tell them a
model exists that they were not given). The chat the original model could not serve has its
own record (failed, every upstream tried) and gives back what it held before the fallback is
admitted; the fallback's record names the model it stands in for (`fallback_from`).

Only a refusal that says the model could not serve (`unavailable`, or a malformed answer)
falls back, and only while nothing was sent to the client: after that, a second answer would
follow the first. `/v1` runs the fallback in `chat_run`; the websocket consumer admits it with
`chat_fallback_admit` when its generation fails, and names it in a second `start` frame.
"""

import dataclasses
from collections.abc import Awaitable, Callable
from typing import TypeVar

from inference.chat.admission import ChatAdmitted, chat_admit
from inference.chat.refusal import ChatRefused

_End = TypeVar("_End")
# The refusals that say the model could not serve the chat (not the caller's fault, nor a
# policy's): its upstreams failed, it is busy, its registration is not allowed here.
_FALLS_BACK = frozenset({"unavailable", "bad_upstream"})


def chat_refusal_falls_back(refused: ChatRefused, *, admitted: ChatAdmitted) -> bool:
    """Whether `admitted`'s model has fallbacks to ask after `refused`."""
    return chat_failure_falls_back(refused.code, admitted=admitted)


def chat_failure_falls_back(code: str, *, admitted: ChatAdmitted) -> bool:
    """Whether `admitted`'s model has fallbacks to ask after a failure with `code`."""
    return bool(admitted.plan.fallback_models) and code in _FALLS_BACK and admitted.frame is not None


async def chat_fallback_admit(admitted: ChatAdmitted, *, after: str | None = None) -> ChatAdmitted | None:
    """The first fallback of `admitted`'s model (after the one named `after`, where one was
    tried already) that the caller may use and that admits them, admitted; None when none
    does. `admitted` is the chat of the model the caller asked for."""
    principal, frame = admitted.principal, admitted.frame
    assert principal is not None and frame is not None  # noqa: PT018, S101 - see chat_failure_falls_back
    names = admitted.plan.fallback_models
    for name in names[names.index(after) + 1 :] if after in names else names:
        try:
            fallback = await chat_admit(
                principal=principal,
                frame=dataclasses.replace(frame, model=name),
                request_id=admitted.request_id,
                client_ip=admitted.client_ip,
                channel=admitted.channel,
                fallback_from=admitted.plan.model_name,
            )
        except ChatRefused:
            continue  # not the caller's to use, or over a limit: audited by admission
        fallback.conversation_id = admitted.conversation_id
        return fallback
    return None


async def chat_fallback_run(
    admitted: ChatAdmitted,
    refused: ChatRefused,
    *,
    run: Callable[[ChatAdmitted], Awaitable[_End]],
    answer_begun: Callable[[], bool],
) -> _End:
    """`run` the first fallback of `admitted`'s model that the caller may use and that
    answers; raises `refused` (the original error) when none does, or a fallback's own
    refusal once its answer had begun (`answer_begun`: something was sent to the client)."""
    after = None
    while (fallback := await chat_fallback_admit(admitted, after=after)) is not None:
        try:
            return await run(fallback)
        except ChatRefused as again:
            if again.code not in _FALLS_BACK or answer_begun():
                raise
        after = fallback.plan.model_name
    raise refused

"""A chat answered from its model's response cache, or generated and kept there
(`inference.chat.response_cache` keeps the answers; this gives them as the model would)."""

import asyncio
import functools
import time
from dataclasses import replace
from typing import Any

from accounts.quotas.charge import NOTHING, Charge
from inference.chat.admission import ChatAdmitted
from inference.chat.answer import ChatDoor, ChatEnd, ChatStart, OnTexts, OnToolCalls
from inference.chat.generate import chat_cancelled, chat_generate
from inference.chat.outcome import ChatProgress, chat_outcome
from inference.chat.response_cache import (
    CachedAnswer,
    response_cache_get,
    response_cache_key,
    response_cache_put,
)
from inference.engines.base import TokenLogprob, token_arguments
from inference.engines.tool_calls import tool_calls_merge


async def chat_cached_or_generated(admitted: ChatAdmitted, *, stream: bool, door: ChatDoor) -> ChatEnd:
    """The answer from the model's response cache, or generated (and kept there, where the
    model keeps answers)."""
    plan = admitted.plan
    key = response_cache_key(admitted)
    if key is not None:
        hit = await response_cache_get(key=key)
        if hit is not None:
            start = ChatStart(model=plan.model_name, version=plan.version_label, cache="hit")
            return await _replayed(admitted, hit, door=door, start=start)
    start = ChatStart(
        model=plan.model_name, version=plan.version_label, cache=None if key is None else "miss"
    )
    kept = CachedAnswer() if key is not None else None
    on_texts: OnTexts = door.texts
    on_tool_calls: OnToolCalls | None = door.tool_calls if door.tools else None
    if kept is not None:
        on_texts, on_tool_calls = _kept_texts(kept, on_texts), _kept_calls(kept, on_tool_calls)
    end = await chat_generate(
        admitted,
        stream=stream,
        on_started=functools.partial(door.started, start),
        on_texts=on_texts,
        on_tool_calls=on_tool_calls,
    )
    if kept is not None and key is not None and plan.cache is not None:  # all three, or none
        kept.finish_reason = end.finish_reason
        kept.prompt_tokens, kept.completion_tokens = end.prompt_tokens, end.completion_tokens
        kept.tool_calls = tool_calls_merge(kept.tool_calls)
        await response_cache_put(key=key, answer=kept, seconds=plan.cache.seconds)
    return replace(end, start=start)


def _kept_texts(kept: CachedAnswer, on_texts: OnTexts) -> OnTexts:
    async def texts(more: list[str], logprobs: list[TokenLogprob] | None = None, /) -> None:
        kept.texts.extend(more)
        if logprobs is not None:
            kept.logprobs = (kept.logprobs or []) + logprobs
        await on_texts(*token_arguments(more, logprobs))

    return texts


def _kept_calls(kept: CachedAnswer, on_tool_calls: OnToolCalls | None) -> OnToolCalls | None:
    if on_tool_calls is None:
        return None

    async def tool_calls(deltas: list[dict[str, Any]]) -> None:
        kept.tool_calls.extend(deltas)
        await on_tool_calls(deltas)

    return tool_calls


async def _replayed(
    admitted: ChatAdmitted, hit: CachedAnswer, *, door: ChatDoor, start: ChatStart
) -> ChatEnd:
    """A kept answer, given as the model gave it, recorded (`cache: hit`) and charged as the
    model says (in full, or nothing); the model is not called."""
    assert admitted.plan.cache is not None  # noqa: S101 - only a cached plan has a key
    progress = ChatProgress(reply=[] if admitted.conversation_id else None)
    charge = (
        Charge(prompt_tokens=hit.prompt_tokens, completion_tokens=hit.completion_tokens)
        if admitted.plan.cache.charge == "full"
        else NOTHING
    )
    try:
        await door.started(start)
        progress.first_token_at = time.time()
        logprobs = hit.logprobs if admitted.plan.params.logprobs is not None else None
        if hit.texts or logprobs:
            await door.texts(hit.texts, logprobs)
        if hit.tool_calls and door.tools:
            await door.tool_calls([{"index": index, **call} for index, call in enumerate(hit.tool_calls)])
        progress.delivered = len(hit.texts)
        if progress.reply is not None:
            progress.reply.extend(hit.texts)
    except BaseException:
        await asyncio.shield(chat_cancelled(admitted, progress))
        raise
    end = ChatEnd(
        finish_reason=hit.finish_reason,
        prompt_tokens=hit.prompt_tokens,
        completion_tokens=hit.completion_tokens,
        start=start,
    )
    await chat_outcome(
        admitted=admitted,
        progress=progress,
        failed=False,
        charge=charge,
        details={**end.as_event(), "cache": "hit", "charged_tokens": charge.tokens},
    )
    return end

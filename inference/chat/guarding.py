"""Guardrails in the chat pipeline: the request checked before it is admitted (its messages
as the model will see them), and the answer redacted as it is written, at every door.

Failure mode: a request the guard blocks raises `ChatRefused` (`content_blocked`, or
`prompt_too_long`), audited with the rule and the kinds found, never the text; nothing was
charged. A redaction, in or out, is audited the same way (`guardrail.redacted`).
"""

from collections import Counter
from dataclasses import replace
from typing import Any

from accounts.models import ApiKey, User
from gatehouse.database_calls import database_sync
from guardrails.prompt import GuardBlocked, prompt_guard
from guardrails.rules import Guard
from guardrails.stream import StreamRedactor
from inference.chat.answer import OnTexts
from inference.chat.refusal import ChatRefused
from inference.engines.base import ChatFeatures, ChatMessage, TokenLogprob
from inference.protocol import ChatFrame
from inference.services.chat import chat_guard_redaction_record


def chat_frame_guarded(frame: ChatFrame, guard: Guard) -> tuple[ChatFrame, Counter[str]]:
    """`frame` as the model may see it (its messages, and the verbatim ones tools carry), and
    what was redacted; or ChatRefused where the guard blocks it."""
    verbatim = frame.features.messages if frame.features is not None else None
    places = _verbatim_texts(verbatim)
    try:
        guarded = prompt_guard(guard=guard, texts=[message.content for message in frame.messages])
        # The verbatim messages say the same again (with tool calls): checked and redacted
        # alike, but neither measured against the length limit nor counted a second time.
        again = prompt_guard(
            guard=replace(guard, max_prompt_chars=None), texts=[text for _, _, text in places]
        )
    except GuardBlocked as blocked:
        protocol_code = "content_blocked" if blocked.code == "content_blocked" else "invalid"
        raise ChatRefused(code=blocked.code, message=blocked.message, protocol_code=protocol_code) from None
    if not (guarded.redacted or again.redacted):
        return frame, guarded.redacted
    messages = [
        ChatMessage(role=message.role, content=text)
        for message, text in zip(frame.messages, guarded.texts, strict=True)
    ]
    features = frame.features
    if features is not None and verbatim is not None:
        features = ChatFeatures(
            fields=features.fields, messages=_verbatim_with(verbatim, places, again.texts)
        )
    return replace(frame, messages=messages, features=features), guarded.redacted or again.redacted


def _verbatim_texts(messages: list[dict[str, Any]] | None) -> list[tuple[int, int | None, str]]:
    """Every text in the verbatim messages: (message, part or None, text)."""
    places: list[tuple[int, int | None, str]] = []
    for index, message in enumerate(messages or []):
        content = message.get("content")
        if isinstance(content, str):
            places.append((index, None, content))
        elif isinstance(content, list):
            places += [
                (index, part_index, part["text"])
                for part_index, part in enumerate(content)
                if isinstance(part, dict) and isinstance(part.get("text"), str)
            ]
    return places


def _verbatim_with(
    messages: list[dict[str, Any]], places: list[tuple[int, int | None, str]], texts: list[str]
) -> list[dict[str, Any]]:
    out = [dict(message) for message in messages]
    for (index, part_index, _), text in zip(places, texts, strict=True):
        if part_index is None:
            out[index]["content"] = text
        else:
            parts = [dict(part) for part in out[index]["content"]]
            parts[part_index]["text"] = text
            out[index]["content"] = parts
    return out


async def guard_redactions_record(
    *,
    user: User,
    api_key: ApiKey | None,
    guard: Guard,
    direction: str,
    redacted: Counter[str],
    model: str,
    generation_id: str | None = None,
) -> None:
    """Audit what a guard redacted (kinds and counts, never the text), where it did."""
    if not redacted:
        return
    await database_sync(chat_guard_redaction_record)(
        user=user,
        api_key=api_key,
        policies=list(guard.policies),
        direction=direction,
        kinds=dict(sorted(redacted.items())),
        model_name=model,
        generation_id=generation_id,
    )


class OutputGuard:
    """The answer's texts through a `StreamRedactor` on their way to the door: handed on to
    `on_texts` (`texts`, then `finish`), or given back to a door that writes them itself
    (`release`, then `release_rest`)."""

    def __init__(self, guard: Guard, on_texts: OnTexts | None) -> None:
        self.guard = guard
        self._redactor = StreamRedactor(kinds=guard.watched, deny=guard.deny, phrases=guard.deny_phrases)
        self._on_texts = on_texts

    @property
    def redacted(self) -> Counter[str]:
        return self._redactor.redacted

    async def texts(self, texts: list[str], logprobs: list[TokenLogprob] | None = None, /) -> None:
        # Released text no longer lines up with the model's tokens: their entries are not
        # passed on (they would quote what was held back).
        released = self._redactor.push("".join(texts))
        if not released:
            return
        assert self._on_texts is not None  # noqa: S101 - called only where it was given one
        if logprobs is None:
            await self._on_texts([released])
        else:
            await self._on_texts([released], [])

    async def finish(self) -> None:
        if rest := self._redactor.finish():
            assert self._on_texts is not None  # noqa: S101 - called only where it was given one
            await self._on_texts([rest])

    # For a door that writes what is released itself (the websocket's token frames).
    def release(self, texts: list[str]) -> str:
        return self._redactor.push("".join(texts))

    def release_rest(self) -> str:
        return self._redactor.finish()


def output_guard_for(guard: Guard | None, on_texts: OnTexts | None = None) -> OutputGuard | None:
    """The answer's guard, where its policy redacts answers."""
    if guard is None or not guard.redacts_answers:
        return None
    return OutputGuard(guard, on_texts)

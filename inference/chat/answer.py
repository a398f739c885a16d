"""What a door gives the pipeline and gets back: callbacks for the answer's pieces as they
come (`ChatDoor` notes whether its answer has begun), who answers (`ChatStart`) and how it ended
(`ChatEnd`)."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from inference.engines.base import AsyncTokenCallback, TokenLogprob, token_arguments

# The answer's texts as they come, with their tokens' log probabilities where asked for.
OnTexts = AsyncTokenCallback
OnToolCalls = Callable[[list[dict[str, Any]]], Awaitable[None]]


@dataclass(frozen=True)
class ChatStart:
    """What the door learns as the answer begins: who answers it, and from where."""

    model: str
    version: str
    # The response cache: "hit" (answered from it), "miss" (asked of the model, and kept),
    # None where the model keeps no answers for this request.
    cache: str | None = None


OnStarted = Callable[[ChatStart], Awaitable[None]]
# Awaited once as an answer begins (the door's `OnStarted`, told who answers).
Begun = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class ChatEnd:
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    # An embedding request's answer: one vector per input.
    vectors: list[list[float]] | None = None
    # Who answered (a fallback model, where the one asked for could not), and from where.
    start: ChatStart | None = None

    def as_event(self) -> dict[str, Any]:
        """How it ended and what it used (the vectors are the answer, not its record)."""
        return {
            "finish_reason": self.finish_reason,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }


class ChatDoor:
    """The door's callbacks, noting whether its answer has begun (after which no other model
    may answer instead)."""

    def __init__(
        self, *, stream: bool, on_started: OnStarted, on_texts: OnTexts, on_tool_calls: OnToolCalls | None
    ) -> None:
        self._stream, self._on_started, self._on_texts = stream, on_started, on_texts
        self._on_tool_calls = on_tool_calls
        self.tools = on_tool_calls is not None
        self.begun = False

    async def started(self, start: ChatStart) -> None:
        self.begun = self.begun or self._stream  # a stream's opening is written now
        await self._on_started(start)

    async def texts(self, texts: list[str], logprobs: list[TokenLogprob] | None = None, /) -> None:
        self.begun = True
        await self._on_texts(*token_arguments(texts, logprobs))

    async def tool_calls(self, deltas: list[dict[str, Any]]) -> None:
        self.begun = True
        assert self._on_tool_calls is not None  # noqa: S101 - passed on only where there is one
        await self._on_tool_calls(deltas)

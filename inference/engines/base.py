"""What every inference engine takes and gives back, independent of the backend."""

from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, Protocol


class FinishReason(StrEnum):
    STOP = "stop"
    LENGTH = "length"
    CANCELLED = "cancelled"
    TOOL_CALLS = "tool_calls"  # the answer is calls to the caller's tools (remote versions)


@dataclass(frozen=True)
class ChatMessage:
    role: str
    content: str
    # An assistant's calls to tools (OpenAI's shape), and which call a `tool` message answers:
    # rendered by a local version's chat template where it offers tools.
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


@dataclass(frozen=True)
class GenerationParams:
    max_tokens: int
    temperature: float = 0.7
    top_p: float = 1.0
    # Generation ends before any of these strings; the text never contains them.
    stop: tuple[str, ...] = ()
    # Wall-clock budget for one generation, in seconds (None: no limit).
    max_seconds: float | None = None
    # A local version's structured output (OpenAI's response_format: json_object or
    # json_schema), decoded under its grammar; None: free text. Remote versions get theirs
    # passed through (ChatFeatures) instead.
    response_format: dict[str, Any] | None = None
    # The one message is a prompt to continue as it is: no chat template (/v1/completions).
    raw_prompt: bool = False
    # An embedding's vector size, where fewer than the model's are asked for.
    dimensions: int | None = None
    # Sampling seeded: the same seed, settings and prompt make the same text.
    seed: int | None = None
    # The functions a local version's chat template offers the model (OpenAI's tool objects).
    tools: list[dict[str, Any]] | None = None
    # Each token's log probability is asked for, with this many of the likeliest alternatives
    # (OpenAI's logprobs and top_logprobs); None: not asked.
    logprobs: int | None = None

    def to_payload(self) -> dict[str, Any]:
        """JSON-safe, for a job; without the fields newer than the previous release where they
        are at their defaults, so that its workers (which do not know them) still run plain
        chats."""
        payload = asdict(self)
        for name in ("response_format", "raw_prompt", "dimensions", "seed", "tools", "logprobs"):
            if payload[name] is None or payload[name] is False:
                del payload[name]
        return payload


@dataclass(frozen=True)
class ChatFeatures:
    """What a chat asks beyond text, in OpenAI's own fields: tools and structured outputs.

    Validated before admission (`inference.api.chat_features`); only a version that serves
    them is given them (remote versions, passed through verbatim).
    """

    # tools, tool_choice, parallel_tool_calls, response_format, as the upstream is sent them.
    fields: dict[str, Any]
    # The conversation verbatim where it carries tool calls or tool results (else None: the
    # plain messages say it all).
    messages: list[dict[str, Any]] | None = None

    @property
    def names(self) -> list[str]:
        return sorted(self.fields)

    @property
    def tool_names(self) -> frozenset[str]:
        return frozenset(tool["function"]["name"] for tool in self.fields.get("tools", ()))


@dataclass(frozen=True)
class GenerationResult:
    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason


# One token's log probability in OpenAI's shape: token, logprob, bytes, and top_logprobs
# (the likeliest alternatives, each a token, logprob and bytes).
TokenLogprob = dict[str, Any]


class TokenCallback(Protocol):
    """Called with the texts of one or more new tokens, in order: one text per token (it may
    be empty while a multi-byte character is still incomplete). Several arrive at once when
    the reader fell behind, so a slow hop is paid per call, not per token. An empty list is a
    heartbeat: the generation is alive but has nothing new yet. Blocking here slows
    generation down: that is the back-pressure a slow reader applies.

    Where the generation was asked for log probabilities (`GenerationParams.logprobs`), the
    second argument is given: the entries of the same tokens, in order, one per token of the
    answer (the end-of-text token has a text, empty, and no entry). Otherwise it is not.
    """

    def __call__(self, texts: list[str], logprobs: list[TokenLogprob] | None = None, /) -> None: ...


def token_arguments(
    texts: list[str], logprobs: list[TokenLogprob] | None
) -> tuple[list[str]] | tuple[list[str], list[TokenLogprob]]:
    """What a token callback is called with: the texts, and their tokens' entries only where
    they were asked for (`logprobs` None: not asked, and the callback is given one argument)."""
    return (texts,) if logprobs is None else (texts, logprobs)


class AsyncTokenCallback(Protocol):
    """`TokenCallback` on an event loop: texts read together, and (given only where they were
    asked for) their tokens' log probabilities."""

    async def __call__(self, texts: list[str], logprobs: list[TokenLogprob] | None = None, /) -> None: ...


# Polled between tokens; True ends the generation with finish reason "cancelled".
StopCheck = Callable[[], bool]


class Engine(Protocol):
    def generate_stream(
        self,
        *,
        messages: list[ChatMessage],
        params: GenerationParams,
        on_token: TokenCallback,
        should_stop: StopCheck,
        arriving_with: int = 0,
    ) -> GenerationResult:
        """`arriving_with`: how many other requests for the model its caller was starting at
        the same moment; an engine that batches may wait a moment for them to start them together
        (`inference.chat.arrivals`); the answer never depends on it."""
        ...

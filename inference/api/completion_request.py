"""Validate an OpenAI chat completion request body, as OpenAI does, into a chat frame.

What Gatehouse honours: model, messages, max_tokens / max_completion_tokens, temperature,
top_p, stop, stream, stream_options.include_usage, seed, logprobs and top_logprobs, and for the
versions that serve them tools, tool_choice, parallel_tool_calls and response_format
(`inference.api.chat_features`). Accepted at their neutral values only (anything else is
refused, never silently ignored): presence_penalty, frequency_penalty, logit_bias. `n` is
honoured up to the model's `max_choices`. Accepted and not used: user,
metadata, store. Any other field is refused, with OpenAI's message.
"""

from dataclasses import dataclass, replace
from typing import Any

from inference.api.chat_features import FIELDS, chat_features_parse
from inference.api.request_invalid import CompletionRequestInvalid
from inference.engines.logprobs import MAX_TOP_LOGPROBS
from inference.protocol import ChatFrame, ProtocolError, frame_parse

_NEUTRAL: dict[str, tuple[object, ...]] = {
    "presence_penalty": (None, 0, 0.0),
    "frequency_penalty": (None, 0, 0.0),
    "logit_bias": (None, {}),
    "functions": (None, []),
    "function_call": (None, "none"),
    "store": (None, False),
}
_UNUSED = ("user", "metadata")
_HONOURED = (
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "stream",
    "stream_options",
    "seed",
    "logprobs",
    "top_logprobs",
    "n",
    *FIELDS,
)
_WHY_NOT: dict[str, str] = {
    "functions": "Function calling is not supported; use tools.",
    "function_call": "Function calling is not supported; use tools.",
}
# OpenAI's limit on n.
MAX_CHOICES = 128
# OpenAI's newer name for the system role.
_ROLE_ALIASES = {"developer": "system"}


@dataclass(frozen=True)
class CompletionRequest:
    frame: ChatFrame
    stream: bool
    include_usage: bool
    # What the answer repeats of the request (the Responses API echoes its settings).
    echo: dict[str, Any] | None = None


def _content_text(content: Any, position: int) -> Any:
    """A message's content: a string, or OpenAI's list of text parts joined into one."""
    if not isinstance(content, list):
        return content
    texts = []
    for part in content:
        if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise CompletionRequestInvalid(
                f"messages[{position}].content: only text parts are supported.", param=f"messages[{position}]"
            )
        texts.append(part["text"])
    return "".join(texts)


def _messages(raw: Any) -> Any:
    if not isinstance(raw, list):
        return raw  # frame_parse explains what a messages list must be
    messages = []
    for position, message in enumerate(raw):
        if not isinstance(message, dict):
            messages.append(message)
            continue
        role = message.get("role")
        role = _ROLE_ALIASES.get(role, role) if isinstance(role, str) else role
        messages.append({"role": role, "content": _content_text(message.get("content"), position)})
    return messages


def stream_options_parse(body: dict[str, Any], stream: bool) -> bool:
    """Whether a stream ends with a usage chunk (`stream_options.include_usage`)."""
    options = body.get("stream_options")
    if options is None:
        return False
    if not stream:
        raise CompletionRequestInvalid(
            "stream_options is only allowed when stream is true.", param="stream_options"
        )
    if not isinstance(options, dict) or not isinstance(options.get("include_usage", False), bool):
        raise CompletionRequestInvalid(
            "stream_options must be an object with a boolean include_usage.", param="stream_options"
        )
    return bool(options.get("include_usage", False))


def seed_parse(body: dict[str, Any]) -> int | None:
    """OpenAI's `seed`: an integer (a 64-bit one), or nothing."""
    seed = body.get("seed")
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int) or not -(2**63) <= seed < 2**63:
        raise CompletionRequestInvalid("seed must be an integer.", param="seed")
    return seed


def choices_parse(body: dict[str, Any]) -> int:
    """OpenAI's `n`: how many choices to write, 1 to 128 (a model allows fewer: `max_choices`)."""
    count = body.get("n")
    if count is None:
        return 1
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_CHOICES:
        raise CompletionRequestInvalid(f"n must be an integer from 1 to {MAX_CHOICES}.", param="n")
    return count


def logprobs_parse(body: dict[str, Any]) -> int | None:
    """OpenAI's `logprobs` (a boolean) and `top_logprobs` (0 to 20, only with logprobs): how
    many alternatives each token's entry lists, or None where none are asked for."""
    asked, top = body.get("logprobs"), body.get("top_logprobs")
    if asked is not None and not isinstance(asked, bool):
        raise CompletionRequestInvalid("logprobs must be a boolean.", param="logprobs")
    if top is None:
        return 0 if asked else None
    if isinstance(top, bool) or not isinstance(top, int) or not 0 <= top <= MAX_TOP_LOGPROBS:
        raise CompletionRequestInvalid(
            f"top_logprobs must be an integer from 0 to {MAX_TOP_LOGPROBS}.", param="top_logprobs"
        )
    if not asked:
        raise CompletionRequestInvalid("top_logprobs requires logprobs to be true.", param="top_logprobs")
    return top


def request_fields_check(
    body: Any,
    *,
    honoured: tuple[str, ...],
    neutral: dict[str, tuple[object, ...]],
    unused: tuple[str, ...],
    why_not: dict[str, str],
) -> tuple[dict[str, Any], bool]:
    """The body as an object whose every field is known and every neutral one neutral, and
    whether it asks for a stream."""
    if not isinstance(body, dict):
        raise CompletionRequestInvalid("The request body must be a JSON object.")
    for name in body:
        if name not in honoured and name not in neutral and name not in unused:
            raise CompletionRequestInvalid(f"Unrecognized request argument supplied: {name}", param=name)
    for name, values in neutral.items():
        if body.get(name) not in values:
            message = why_not.get(name, f"{name} is not supported; leave it out or at its default.")
            raise CompletionRequestInvalid(message, param=name)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise CompletionRequestInvalid("stream must be a boolean.", param="stream")
    return body, stream


def completion_request_parse(body: Any, *, request_id: str) -> CompletionRequest:
    body, stream = request_fields_check(
        body, honoured=_HONOURED, neutral=_NEUTRAL, unused=_UNUSED, why_not=_WHY_NOT
    )
    include_usage = stream_options_parse(body, stream)
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    features, messages = chat_features_parse(body)
    try:
        frame = frame_parse(
            {
                "type": "chat",
                "id": request_id[:64],
                "model": body.get("model"),
                "messages": _messages(messages),
                "max_tokens": max_tokens,
                "temperature": body.get("temperature"),
                "top_p": body.get("top_p"),
                "stop": body.get("stop"),
            }
        )
    except ProtocolError as invalid:
        raise CompletionRequestInvalid(invalid.message) from None
    assert isinstance(frame, ChatFrame)  # noqa: S101 - a "chat" payload parses to a ChatFrame
    return CompletionRequest(
        frame=replace(
            frame,
            features=features,
            seed=seed_parse(body),
            logprobs=logprobs_parse(body),
            choices=choices_parse(body),
        ),
        stream=stream,
        include_usage=include_usage,
    )

"""Validate an OpenAI (legacy) text completion request body into a chat frame of one prompt.

`POST /v1/completions` continues a prompt as it is, without the chat template: the frame
carries the prompt as its one message and `raw_prompt`, which the engines honour (a local
model tokenizes the prompt alone; a remote one is asked at its own `/completions`).

What Gatehouse honours: model, prompt (a string, or a list of one), max_tokens (16 unless
said, as OpenAI's default), temperature, top_p, stop, stream, stream_options.include_usage,
and as in chats seed and n. Accepted at their neutral values only: best_of, echo, suffix,
logprobs, presence_penalty, frequency_penalty, logit_bias. Accepted and not used: user. Any
other field is refused.
"""

from dataclasses import replace
from typing import Any

from inference.api.completion_request import (
    CompletionRequest,
    choices_parse,
    request_fields_check,
    seed_parse,
    stream_options_parse,
)
from inference.api.request_invalid import CompletionRequestInvalid
from inference.protocol import ChatFrame, ProtocolError, frame_parse

# OpenAI's default for this endpoint (chat completions default to the model's own).
DEFAULT_MAX_TOKENS = 16
_HONOURED = (
    "model",
    "prompt",
    "max_tokens",
    "temperature",
    "top_p",
    "stop",
    "stream",
    "stream_options",
    "seed",
    "n",
)
_NEUTRAL: dict[str, tuple[object, ...]] = {
    "best_of": (None, 1),
    "echo": (None, False),
    "suffix": (None, ""),
    "logprobs": (None, 0),
    "presence_penalty": (None, 0, 0.0),
    "frequency_penalty": (None, 0, 0.0),
    "logit_bias": (None, {}),
}
_UNUSED = ("user",)
_WHY_NOT = {
    "best_of": "best_of must be 1.",
    "echo": "echo is not supported.",
    "suffix": "suffix (insertion) is not supported.",
    "logprobs": "Log probabilities are served by /v1/chat/completions (logprobs, top_logprobs), not here.",
}


def _prompt(raw: Any) -> str:
    if isinstance(raw, list) and len(raw) == 1:
        raw = raw[0]
    if isinstance(raw, str):
        return raw
    if isinstance(raw, list) and raw and all(isinstance(item, str) for item in raw):
        raise CompletionRequestInvalid("Only one prompt per request is supported.", param="prompt")
    raise CompletionRequestInvalid("must be a string (token arrays are not supported).", param="prompt")


def text_completion_request_parse(body: Any, *, request_id: str) -> CompletionRequest:
    body, stream = request_fields_check(
        body, honoured=_HONOURED, neutral=_NEUTRAL, unused=_UNUSED, why_not=_WHY_NOT
    )
    include_usage = stream_options_parse(body, stream)
    if "prompt" not in body:
        raise CompletionRequestInvalid("you must provide a prompt.", param="prompt")
    try:
        frame = frame_parse(
            {
                "type": "chat",
                "id": request_id[:64],
                "model": body.get("model"),
                "messages": [{"role": "user", "content": _prompt(body["prompt"])}],
                "max_tokens": body.get("max_tokens", DEFAULT_MAX_TOKENS),
                "temperature": body.get("temperature"),
                "top_p": body.get("top_p"),
                "stop": body.get("stop"),
            }
        )
    except ProtocolError as invalid:
        raise CompletionRequestInvalid(invalid.message.replace("messages[0].content", "prompt")) from None
    assert isinstance(frame, ChatFrame)  # noqa: S101 - a "chat" payload parses to a ChatFrame
    return CompletionRequest(
        frame=replace(frame, raw_prompt=True, seed=seed_parse(body), choices=choices_parse(body)),
        stream=stream,
        include_usage=include_usage,
    )

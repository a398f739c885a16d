"""Validate an OpenAI embeddings request body into a chat frame whose messages are its inputs.

What Gatehouse honours: model, input (a string, or a list of 1 to 2,048 non-empty strings),
encoding_format (float or base64), dimensions (a local model cuts its vectors to as many, a
remote one is passed the number). Accepted and not used: user. Token arrays and any other
field are refused, with OpenAI's message.
"""

from dataclasses import dataclass
from typing import Any

from inference.api.request_invalid import CompletionRequestInvalid
from inference.engines.base import ChatMessage
from inference.protocol import MAX_CONTENT_CHARS, MAX_MODEL_NAME_CHARS, ChatFrame

MAX_INPUTS = 2048
_KNOWN = ("model", "input", "encoding_format", "dimensions", "user")


@dataclass(frozen=True)
class EmbeddingRequest:
    frame: ChatFrame
    # How each vector is written: a list of floats, or base64 of little-endian float32s.
    encoding_format: str


def _inputs(raw: Any) -> list[str]:
    texts = [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list) or not 1 <= len(texts) <= MAX_INPUTS:
        raise CompletionRequestInvalid(
            f"must be a string or a list of 1 to {MAX_INPUTS} strings.", param="input"
        )
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise CompletionRequestInvalid(
                "must be text (token arrays are not supported).", param=f"input[{index}]"
            )
        if not 1 <= len(text) <= MAX_CONTENT_CHARS:
            raise CompletionRequestInvalid(
                f"must be a string of 1 to {MAX_CONTENT_CHARS} characters.", param=f"input[{index}]"
            )
    return texts


def _dimensions(raw: Any) -> int | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
        raise CompletionRequestInvalid("must be a positive integer.", param="dimensions")
    return raw


def embedding_request_parse(body: Any, *, request_id: str) -> EmbeddingRequest:
    if not isinstance(body, dict):
        raise CompletionRequestInvalid("The request body must be a JSON object.")
    for name in body:
        if name not in _KNOWN:
            raise CompletionRequestInvalid(f"Unrecognized request argument supplied: {name}", param=name)
    model = body.get("model")
    if not isinstance(model, str) or not 1 <= len(model) <= MAX_MODEL_NAME_CHARS:
        raise CompletionRequestInvalid("must be a model name.", param="model")
    if "input" not in body:
        raise CompletionRequestInvalid("you must provide an input.", param="input")
    encoding_format = body.get("encoding_format") or "float"
    if encoding_format not in ("float", "base64"):
        raise CompletionRequestInvalid("must be 'float' or 'base64'.", param="encoding_format")
    frame = ChatFrame(
        id=request_id[:64],
        model=model,
        messages=[ChatMessage(role="user", content=text) for text in _inputs(body["input"])],
        max_tokens=None,
        temperature=None,
        top_p=None,
        conversation=None,
        embedding=True,
        dimensions=_dimensions(body.get("dimensions")),
    )
    return EmbeddingRequest(frame=frame, encoding_format=encoding_format)

"""The websocket chat protocol of SPEC §6: parsing client frames, building server frames."""

from dataclasses import dataclass
from typing import Any

from inference.engines.base import ChatFeatures, ChatMessage

MAX_MESSAGES = 100
MAX_CONTENT_CHARS = 32_000
MAX_ID_CHARS = 64
MAX_MODEL_NAME_CHARS = 100
MAX_STOP_SEQUENCES = 4
MAX_STOP_CHARS = 100
ROLES = ("system", "user", "assistant")
# The largest frame the ASGI server reads at all (uvicorn --ws-max-size, in every command that
# serves Gatehouse). The consumer's own limit, GATEHOUSE_WS_MAX_FRAME_BYTES (64 KiB), closes
# with 1009 first; this, a little above it, stops the server from buffering anything bigger
# (its default, 16 MiB a frame, let a few clients take hundreds of MiB before that check).
SERVER_MAX_FRAME_BYTES = 64 * 1024 + 1024


class ProtocolError(Exception):
    """A frame the server cannot act on; answered with an `error` frame, connection kept."""

    def __init__(self, message: str, *, code: str = "invalid", client_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.client_id = client_id


@dataclass(frozen=True)
class ChatFrame:
    id: str
    model: str
    messages: list[ChatMessage]
    max_tokens: int | None
    temperature: float | None
    top_p: float | None
    # A stored conversation (its id, from an earlier `start` frame) to continue; None begins a
    # new one. It also keeps the conversation on one model version while a canary runs.
    conversation: str | None
    stop: tuple[str, ...] = ()
    # Tools or structured outputs (/v1 only; the websocket protocol has neither).
    features: ChatFeatures | None = None
    # The one message is a prompt to continue as it is, without the chat template
    # (/v1/completions).
    raw_prompt: bool = False
    # The messages are inputs to embed, one vector each (/v1/embeddings), cut to `dimensions`.
    embedding: bool = False
    dimensions: int | None = None
    # Sampling from this seed makes the same text again (/v1's `seed`).
    seed: int | None = None
    # Each token's log probability, with this many likeliest alternatives (/v1's logprobs and
    # top_logprobs); None: not asked.
    logprobs: int | None = None
    # How many answers to write (/v1's `n`), each its own generation.
    choices: int = 1


@dataclass(frozen=True)
class CancelFrame:
    id: str


def _client_id(payload: dict[str, Any]) -> str:
    value = payload.get("id")
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_ID_CHARS:
        raise ProtocolError(f"'id' must be a string of 1 to {MAX_ID_CHARS} characters.")
    return value


def _number(payload: dict[str, Any], name: str, *, low: float, high: float, client_id: str) -> float | None:
    value = payload.get(name)
    if value is None:
        return None
    # bool is an int in Python, but `true` is not a temperature.
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ProtocolError(f"'{name}' must be a number from {low} to {high}.", client_id=client_id)
    return float(value)


def _max_tokens(payload: dict[str, Any], client_id: str) -> int | None:
    value = payload.get("max_tokens")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ProtocolError("'max_tokens' must be a positive integer.", client_id=client_id)
    return value


def _messages(payload: dict[str, Any], client_id: str) -> list[ChatMessage]:
    raw = payload.get("messages")
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_MESSAGES:
        raise ProtocolError(
            f"'messages' must be a list of 1 to {MAX_MESSAGES} messages.", client_id=client_id
        )
    messages = []
    for position, item in enumerate(raw):
        if not isinstance(item, dict):
            raise ProtocolError(f"messages[{position}] must be an object.", client_id=client_id)
        role, content = item.get("role"), item.get("content")
        if role not in ROLES:
            raise ProtocolError(
                f"messages[{position}].role must be one of {', '.join(ROLES)}.", client_id=client_id
            )
        if not isinstance(content, str) or len(content) > MAX_CONTENT_CHARS:
            raise ProtocolError(
                f"messages[{position}].content must be a string of at most {MAX_CONTENT_CHARS} characters.",
                client_id=client_id,
            )
        messages.append(ChatMessage(role=role, content=content))
    return messages


def _stop(payload: dict[str, Any], client_id: str) -> tuple[str, ...]:
    """OpenAI's `stop`: one string or a list of up to four."""
    value = payload.get("stop")
    if value is None:
        return ()
    values = [value] if isinstance(value, str) else value
    if (
        not isinstance(values, list)
        or len(values) > MAX_STOP_SEQUENCES
        or not all(isinstance(item, str) and 1 <= len(item) <= MAX_STOP_CHARS for item in values)
    ):
        raise ProtocolError(
            f"'stop' must be a string or a list of up to {MAX_STOP_SEQUENCES} strings "
            f"of 1 to {MAX_STOP_CHARS} characters.",
            client_id=client_id,
        )
    return tuple(values)


def _conversation(payload: dict[str, Any], client_id: str) -> str | None:
    value = payload.get("conversation")
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_ID_CHARS:
        raise ProtocolError(
            f"'conversation' must be a string of 1 to {MAX_ID_CHARS} characters.", client_id=client_id
        )
    return value


def frame_parse(payload: Any) -> ChatFrame | CancelFrame:
    """Validate one decoded client frame. Unknown fields are ignored, as OpenAI does."""
    if not isinstance(payload, dict):
        raise ProtocolError("A frame must be a JSON object.")
    kind = payload.get("type")
    if kind == "cancel":
        return CancelFrame(id=_client_id(payload))
    if kind != "chat":
        raise ProtocolError("'type' must be 'chat' or 'cancel'.")
    client_id = _client_id(payload)
    model = payload.get("model")
    if not isinstance(model, str) or not 1 <= len(model) <= MAX_MODEL_NAME_CHARS:
        raise ProtocolError("'model' must be a model name.", client_id=client_id)
    return ChatFrame(
        id=client_id,
        model=model,
        messages=_messages(payload, client_id),
        max_tokens=_max_tokens(payload, client_id),
        temperature=_number(payload, "temperature", low=0.0, high=2.0, client_id=client_id),
        top_p=_number(payload, "top_p", low=0.0, high=1.0, client_id=client_id),
        conversation=_conversation(payload, client_id),
        stop=_stop(payload, client_id),
    )


def error_frame(*, code: str, message: str, client_id: str | None) -> dict[str, Any]:
    return {"type": "error", "id": client_id, "code": code, "message": message}

"""OpenAI's response objects for chat completions: the whole answer, and streamed chunks."""

import time
from typing import Any

import orjson


def _usage(event: dict[str, Any]) -> dict[str, int]:
    prompt, completion = int(event["prompt_tokens"]), int(event["completion_tokens"])
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


class CompletionFormat:
    """Builds every object of one completion; they share its id, creation time and model."""

    def __init__(self, *, generation_id: str, model: str, version: str) -> None:
        self.id = f"chatcmpl-{generation_id}"
        self.created = int(time.time())
        self.model = model
        # Which version answered, where OpenAI names the backend configuration.
        self.fingerprint = f"{model}@{version}"

    def _base(self, kind: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": kind,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": self.fingerprint,
        }

    def completion(
        self, *, text: str, finished: dict[str, Any], tool_calls: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
        if tool_calls:
            message.update(content=text or None, tool_calls=tool_calls)
        return {
            **self._base("chat.completion"),
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": finished["finish_reason"],
                }
            ],
            "usage": _usage(finished),
        }

    def chunk_bytes(
        self, *, delta: dict[str, Any], finish_reason: str | None = None, include_usage: bool = False
    ) -> bytes:
        body: dict[str, Any] = {
            **self._base("chat.completion.chunk"),
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }
        if include_usage:
            body["usage"] = None  # OpenAI sends null here; the totals come in a last chunk
        return sse_bytes(body)

    def usage_chunk_bytes(self, finished: dict[str, Any]) -> bytes:
        return sse_bytes({**self._base("chat.completion.chunk"), "choices": [], "usage": _usage(finished)})


def sse_bytes(data: dict[str, Any]) -> bytes:
    """One server-sent event carrying the JSON object `data`."""
    return b"data: " + orjson.dumps(data) + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


def error_object(*, message: str, code: str, kind: str = "server_error") -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}

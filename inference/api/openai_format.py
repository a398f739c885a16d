"""OpenAI's response objects: chat completions and (legacy) text completions, whole or streamed.

Every format (these, and the Responses API's in `inference.api.responses_format`) answers the
same questions for the door (`inference.chat.http`): what opens a stream, what carries texts
(and tool calls), what closes it or tells of its failure, and the whole answer.
"""

import time
from typing import Any, Protocol

import orjson

from inference.engines.base import TokenLogprob


def _usage(event: dict[str, Any]) -> dict[str, int]:
    prompt, completion = int(event["prompt_tokens"]), int(event["completion_tokens"])
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


class AnswerFormat(Protocol):
    """Builds every object of one answer; they share its id, creation time and model."""

    def opening_bytes(self) -> bytes: ...

    # `logprobs` (the texts' tokens' entries) are given only where the request asked for them,
    # which only a chat completion may.
    def texts_bytes(self, texts: list[str], logprobs: list[TokenLogprob] | None = None) -> bytes: ...

    def tool_calls_bytes(self, deltas: list[dict[str, Any]]) -> bytes: ...

    def closing_bytes(self, *, finished: dict[str, Any]) -> bytes: ...

    def failure_bytes(self, *, message: str, code: str) -> bytes: ...

    def whole(
        self,
        *,
        text: str,
        finished: dict[str, Any],
        tool_calls: list[dict[str, Any]] | None,
        logprobs: list[TokenLogprob] | None = None,
    ) -> dict[str, Any]: ...


class _Format:
    id_prefix = ""
    whole_kind = ""
    chunk_kind = ""

    def __init__(
        self,
        *,
        generation_id: str,
        model: str,
        version: str,
        include_usage: bool = False,
        echo: dict[str, Any] | None = None,
    ) -> None:
        self.id = f"{self.id_prefix}{generation_id}"
        self.created = int(time.time())
        self.model = model
        # Which version answered, where OpenAI names the backend configuration.
        self.fingerprint = f"{model}@{version}"
        self.include_usage = include_usage

    def _base(self, kind: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": kind,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": self.fingerprint,
        }

    def _chunk_bytes(self, choice: dict[str, Any]) -> bytes:
        body: dict[str, Any] = {**self._base(self.chunk_kind), "choices": [{"index": 0, **choice}]}
        if self.include_usage:
            body["usage"] = None  # OpenAI sends null here; the totals come in a last chunk
        return sse_bytes(body)

    def failure_bytes(self, *, message: str, code: str) -> bytes:
        """The stream had begun: the error is its last event."""
        return sse_bytes(error_object(message=message, code=code))

    def _usage_bytes(self, finished: dict[str, Any]) -> bytes:
        if not self.include_usage:
            return b""
        return sse_bytes({**self._base(self.chunk_kind), "choices": [], "usage": _usage(finished)})


class CompletionFormat(_Format):
    """`chat.completion` and its `chat.completion.chunk`s."""

    id_prefix, whole_kind, chunk_kind = "chatcmpl-", "chat.completion", "chat.completion.chunk"

    def _delta_bytes(
        self, delta: dict[str, Any], finish_reason: str | None = None, logprobs: dict[str, Any] | None = None
    ) -> bytes:
        return self._chunk_bytes({"delta": delta, "logprobs": logprobs, "finish_reason": finish_reason})

    def opening_bytes(self) -> bytes:
        return self._delta_bytes({"role": "assistant", "content": ""})

    def texts_bytes(self, texts: list[str], logprobs: list[TokenLogprob] | None = None) -> bytes:
        """A chunk per text; with log probabilities, the texts read together are one chunk
        that carries their tokens' entries (a chunk of several tokens, as vLLM's may be)."""
        if logprobs is None:
            return b"".join(self._delta_bytes({"content": text}) for text in texts)
        return self._delta_bytes({"content": "".join(texts)}, logprobs=_logprobs_object(logprobs))

    def tool_calls_bytes(self, deltas: list[dict[str, Any]]) -> bytes:
        return self._delta_bytes({"tool_calls": deltas})

    def closing_bytes(self, *, finished: dict[str, Any]) -> bytes:
        return self._delta_bytes({}, finished["finish_reason"]) + self._usage_bytes(finished) + SSE_DONE

    def whole(
        self,
        *,
        text: str,
        finished: dict[str, Any],
        tool_calls: list[dict[str, Any]] | None = None,
        logprobs: list[TokenLogprob] | None = None,
    ) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
        if tool_calls:
            message.update(content=text or None, tool_calls=tool_calls)
        choice = {
            "index": 0,
            "message": message,
            "logprobs": None if logprobs is None else _logprobs_object(logprobs),
            "finish_reason": finished["finish_reason"],
        }
        return {**self._base(self.whole_kind), "choices": [choice], "usage": _usage(finished)}


class TextCompletionFormat(_Format):
    """The legacy `text_completion`, whole and streamed (each chunk is one too)."""

    id_prefix, whole_kind, chunk_kind = "cmpl-", "text_completion", "text_completion"

    def _text_bytes(self, text: str, finish_reason: str | None = None) -> bytes:
        return self._chunk_bytes({"text": text, "logprobs": None, "finish_reason": finish_reason})

    def opening_bytes(self) -> bytes:
        return b""  # no role to announce: the first text opens the stream

    def texts_bytes(self, texts: list[str], logprobs: list[TokenLogprob] | None = None) -> bytes:
        return b"".join(self._text_bytes(text) for text in texts)

    def tool_calls_bytes(self, deltas: list[dict[str, Any]]) -> bytes:
        raise AssertionError("text completions offer no tools")  # pragma: no cover

    def closing_bytes(self, *, finished: dict[str, Any]) -> bytes:
        return self._text_bytes("", finished["finish_reason"]) + self._usage_bytes(finished) + SSE_DONE

    def whole(
        self,
        *,
        text: str,
        finished: dict[str, Any],
        tool_calls: list[dict[str, Any]] | None = None,
        logprobs: list[TokenLogprob] | None = None,
    ) -> dict[str, Any]:
        return {
            **self._base(self.whole_kind),
            "choices": [
                {"index": 0, "text": text, "logprobs": None, "finish_reason": finished["finish_reason"]}
            ],
            "usage": _usage(finished),
        }


def _logprobs_object(entries: list[TokenLogprob]) -> dict[str, Any]:
    return {"content": entries, "refusal": None}


def sse_bytes(data: dict[str, Any]) -> bytes:
    """One server-sent event carrying the JSON object `data`."""
    return b"data: " + orjson.dumps(data) + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


def error_object(*, message: str, code: str, kind: str = "server_error") -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}

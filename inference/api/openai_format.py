"""OpenAI's response objects: chat completions and (legacy) text completions, whole or streamed.

Every format (these, and the Responses API's in `inference.api.responses_format`) answers the
same questions for the door (`inference.chat.http`): what opens a stream, what carries texts
(and tool calls), what closes it or tells of its failure, and the whole answer.
"""

import time
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from inference.engines.base import TokenLogprob


def _usage(event: dict[str, Any]) -> dict[str, int]:
    prompt, completion = int(event["prompt_tokens"]), int(event["completion_tokens"])
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


@dataclass(frozen=True)
class ChoiceWritten:
    """One choice's whole answer: its text, how it ended, its calls, its tokens' entries
    (None where log probabilities were not asked for)."""

    text: str
    finish_reason: str
    tool_calls: list[dict[str, Any]] | None = None
    logprobs: list[TokenLogprob] | None = None


class AnswerFormat(Protocol):
    """Builds every object of one answer; they share its id, creation time and model.

    An answer has one choice or several (`n`), each streamed under its `index`. `finished`
    is how the answer ended: a finish reason, and the prompt and completion tokens of all its
    choices together.
    """

    def served_by(self, *, model: str, version: str) -> None: ...

    def opening_bytes(self) -> bytes: ...

    # `logprobs` (the texts' tokens' entries) are given only where the request asked for them,
    # which only a chat completion may.
    def texts_bytes(
        self, texts: list[str], logprobs: list[TokenLogprob] | None = None, *, index: int = 0
    ) -> bytes: ...

    def tool_calls_bytes(self, deltas: list[dict[str, Any]], *, index: int = 0) -> bytes: ...

    def choice_end_bytes(self, *, finish_reason: str, index: int = 0) -> bytes: ...

    def closing_bytes(self, *, finished: dict[str, Any]) -> bytes: ...

    def failure_bytes(self, *, message: str, code: str) -> bytes: ...

    def whole(self, *, choices: list[ChoiceWritten], finished: dict[str, Any]) -> dict[str, Any]: ...


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
        choices: int = 1,
    ) -> None:
        self.id = f"{self.id_prefix}{generation_id}"
        self.created = int(time.time())
        self.served_by(model=model, version=version)
        self.include_usage = include_usage
        self.choices = choices

    def served_by(self, *, model: str, version: str) -> None:
        """Who answers: the model asked for, or its fallback."""
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

    def _chunk_bytes(self, choice: dict[str, Any], index: int) -> bytes:
        body: dict[str, Any] = {**self._base(self.chunk_kind), "choices": [{"index": index, **choice}]}
        if self.include_usage:
            body["usage"] = None  # OpenAI sends null here; the totals come in a last chunk
        return sse_bytes(body)

    def failure_bytes(self, *, message: str, code: str) -> bytes:
        """The stream had begun: the error is its last event."""
        return sse_bytes(error_object(message=message, code=code))

    def closing_bytes(self, *, finished: dict[str, Any]) -> bytes:
        """After every choice's end: the usage (if asked for), then `[DONE]`."""
        if not self.include_usage:
            return SSE_DONE
        usage = sse_bytes({**self._base(self.chunk_kind), "choices": [], "usage": _usage(finished)})
        return usage + SSE_DONE


class CompletionFormat(_Format):
    """`chat.completion` and its `chat.completion.chunk`s."""

    id_prefix, whole_kind, chunk_kind = "chatcmpl-", "chat.completion", "chat.completion.chunk"

    def _delta_bytes(
        self,
        delta: dict[str, Any],
        *,
        index: int,
        finish_reason: str | None = None,
        logprobs: dict[str, Any] | None = None,
    ) -> bytes:
        return self._chunk_bytes(
            {"delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}, index
        )

    def opening_bytes(self) -> bytes:
        return b"".join(
            self._delta_bytes({"role": "assistant", "content": ""}, index=index)
            for index in range(self.choices)
        )

    def texts_bytes(
        self, texts: list[str], logprobs: list[TokenLogprob] | None = None, *, index: int = 0
    ) -> bytes:
        """A chunk per text; with log probabilities, the texts read together are one chunk
        that carries their tokens' entries (a chunk of several tokens, as vLLM's may be)."""
        if logprobs is None:
            return b"".join(self._delta_bytes({"content": text}, index=index) for text in texts)
        return self._delta_bytes(
            {"content": "".join(texts)}, index=index, logprobs=_logprobs_object(logprobs)
        )

    def tool_calls_bytes(self, deltas: list[dict[str, Any]], *, index: int = 0) -> bytes:
        return self._delta_bytes({"tool_calls": deltas}, index=index)

    def choice_end_bytes(self, *, finish_reason: str, index: int = 0) -> bytes:
        return self._delta_bytes({}, index=index, finish_reason=finish_reason)

    def whole(self, *, choices: list[ChoiceWritten], finished: dict[str, Any]) -> dict[str, Any]:
        return {
            **self._base(self.whole_kind),
            "choices": [_chat_choice(index, written) for index, written in enumerate(choices)],
            "usage": _usage(finished),
        }


def _chat_choice(index: int, written: ChoiceWritten) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": written.text, "refusal": None}
    if written.tool_calls:
        message.update(content=written.text or None, tool_calls=written.tool_calls)
    return {
        "index": index,
        "message": message,
        "logprobs": None if written.logprobs is None else _logprobs_object(written.logprobs),
        "finish_reason": written.finish_reason,
    }


class TextCompletionFormat(_Format):
    """The legacy `text_completion`, whole and streamed (each chunk is one too)."""

    id_prefix, whole_kind, chunk_kind = "cmpl-", "text_completion", "text_completion"

    def _text_bytes(self, text: str, *, index: int, finish_reason: str | None = None) -> bytes:
        return self._chunk_bytes({"text": text, "logprobs": None, "finish_reason": finish_reason}, index)

    def opening_bytes(self) -> bytes:
        return b""  # no role to announce: the first text opens the stream

    def texts_bytes(
        self, texts: list[str], logprobs: list[TokenLogprob] | None = None, *, index: int = 0
    ) -> bytes:
        return b"".join(self._text_bytes(text, index=index) for text in texts)

    def tool_calls_bytes(self, deltas: list[dict[str, Any]], *, index: int = 0) -> bytes:
        raise AssertionError("text completions offer no tools")  # pragma: no cover

    def choice_end_bytes(self, *, finish_reason: str, index: int = 0) -> bytes:
        return self._text_bytes("", index=index, finish_reason=finish_reason)

    def whole(self, *, choices: list[ChoiceWritten], finished: dict[str, Any]) -> dict[str, Any]:
        return {
            **self._base(self.whole_kind),
            "choices": [
                {
                    "index": index,
                    "text": written.text,
                    "logprobs": None,
                    "finish_reason": written.finish_reason,
                }
                for index, written in enumerate(choices)
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

"""OpenAI's Responses objects: the `response`, and the typed events of its stream.

A stream opens with `response.created` and `response.in_progress`; text arrives in a message
item (`response.output_item.added`, `response.content_part.added`, then
`response.output_text.delta`s), each function call in an item of its own (`added`, then
`response.function_call_arguments.delta`s); closing finishes every open item (`...done`
events) and ends with `response.completed` (or `response.incomplete` when the output ran
out of tokens) carrying the whole response. Every event has a `sequence_number`.
"""

import copy
import time
from typing import Any

import orjson

from inference.api.openai_format import ChoiceWritten
from inference.engines.base import TokenLogprob


class ResponsesFormat:
    """Builds one response, whole or as events, keeping the output items as they grow."""

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
        # A response has one output, never choices (`n` is no Responses API field): `choices`
        # and every `index` are 1 and 0.
        self.generation_id = generation_id
        self.id = f"resp_{generation_id}"
        self.created_at = int(time.time())
        self.model = model
        self.echo = echo or {}
        self.sequence = 0
        self.output: list[dict[str, Any]] = []
        self.message: dict[str, Any] | None = None  # the message item open for text
        self.calls: dict[int, dict[str, Any]] = {}  # function-call items by the call's index
        self.open_calls: list[dict[str, Any]] = []

    def served_by(self, *, model: str, version: str) -> None:
        """Who answers: the model asked for, or its fallback."""
        self.model = model

    # --- the response object -----------------------------------------------------------------

    def _response(
        self, *, status: str, finished: dict[str, Any] | None = None, error: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        incomplete = finished is not None and finished["finish_reason"] == "length"
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": "incomplete" if incomplete else status,
            "model": self.model,
            "output": copy.deepcopy(self.output),
            "error": error,
            "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
            "usage": _usage(finished) if finished is not None else None,
            "store": False,
            "background": False,
            "previous_response_id": None,
            **self.echo,
        }

    def whole(self, *, choices: list[ChoiceWritten], finished: dict[str, Any]) -> dict[str, Any]:
        (written,) = choices
        text, tool_calls = written.text, written.tool_calls
        if text or not tool_calls:
            self._message_item()["content"][0]["text"] = text
            self._item_close(self.output[-1])
        for index, call in enumerate(tool_calls or []):
            item = self._call_item(index, call_id=call["id"], name=call["function"]["name"])
            item["arguments"] = call["function"]["arguments"]
            self._item_close(item)
        return self._response(status="completed", finished=finished)

    # --- the stream ----------------------------------------------------------------------------

    def _event(self, kind: str, **fields: Any) -> bytes:
        body = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(body) + b"\n\n"

    def opening_bytes(self) -> bytes:
        response = self._response(status="in_progress")
        return self._event("response.created", response=response) + self._event(
            "response.in_progress", response=response
        )

    def texts_bytes(
        self, texts: list[str], logprobs: list[TokenLogprob] | None = None, *, index: int = 0
    ) -> bytes:
        out = b""
        if self.message is None:
            item = self._message_item()
            part = dict(item["content"][0])
            opened = {**item, "content": []}
            out += self._event("response.output_item.added", output_index=len(self.output) - 1, item=opened)
            out += self._event(
                "response.content_part.added",
                item_id=item["id"],
                output_index=len(self.output) - 1,
                content_index=0,
                part=part,
            )
        message = self.message
        assert message is not None  # noqa: S101 - opened above
        for text in texts:
            message["content"][0]["text"] += text
            out += self._event(
                "response.output_text.delta",
                item_id=message["id"],
                output_index=self.output.index(message),
                content_index=0,
                delta=text,
                logprobs=[],
            )
        return out

    def tool_calls_bytes(self, deltas: list[dict[str, Any]], *, index: int = 0) -> bytes:
        out = b""
        for delta in deltas:
            function = delta.get("function") or {}
            item = self.calls.get(delta["index"])
            if item is None:
                out += self._message_done()  # what the model wrote before calling is complete
                item = self._call_item(
                    delta["index"], call_id=delta.get("id", ""), name=function.get("name", "")
                )
                self.open_calls.append(item)
                out += self._event(
                    "response.output_item.added", output_index=self.output.index(item), item=dict(item)
                )
            item["call_id"] = delta.get("id") or item["call_id"]
            item["name"] = function.get("name") or item["name"]
            if arguments := function.get("arguments"):
                item["arguments"] += arguments
                out += self._event(
                    "response.function_call_arguments.delta",
                    item_id=item["id"],
                    output_index=self.output.index(item),
                    delta=arguments,
                )
        return out

    def closing_bytes(self, *, finished: dict[str, Any]) -> bytes:
        out = self._message_done()
        for item in self.open_calls:
            self._item_close(item)
            index = self.output.index(item)
            out += self._event(
                "response.function_call_arguments.done",
                item_id=item["id"],
                output_index=index,
                name=item["name"],
                arguments=item["arguments"],
            )
            out += self._event("response.output_item.done", output_index=index, item=dict(item))
        self.open_calls = []
        response = self._response(status="completed", finished=finished)
        kind = "response.incomplete" if response["status"] == "incomplete" else "response.completed"
        return out + self._event(kind, response=response)

    def choice_end_bytes(self, *, finish_reason: str, index: int = 0) -> bytes:
        return b""  # the closing events tell how the one output ended

    def failure_bytes(self, *, message: str, code: str) -> bytes:
        error = {"code": code, "message": message}
        return self._event("response.failed", response=self._response(status="failed", error=error))

    # --- items -----------------------------------------------------------------------------------

    def _message_item(self) -> dict[str, Any]:
        self.message = {
            "type": "message",
            "id": f"msg_{self.generation_id}_{len(self.output)}",
            "status": "in_progress",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "", "annotations": [], "logprobs": []}],
        }
        self.output.append(self.message)
        return self.message

    def _call_item(self, index: int, *, call_id: str, name: str) -> dict[str, Any]:
        item = {
            "type": "function_call",
            "id": f"fc_{self.generation_id}_{index}",
            "call_id": call_id,
            "name": name,
            "arguments": "",
            "status": "in_progress",
        }
        self.calls[index] = item
        self.output.append(item)
        return item

    def _item_close(self, item: dict[str, Any]) -> None:
        item["status"] = "completed"
        if item is self.message:
            self.message = None

    def _message_done(self) -> bytes:
        message = self.message
        if message is None:
            return b""
        index, part = self.output.index(message), message["content"][0]
        self._item_close(message)
        return (
            self._event(
                "response.output_text.done",
                item_id=message["id"],
                output_index=index,
                content_index=0,
                text=part["text"],
                logprobs=[],
            )
            + self._event(
                "response.content_part.done",
                item_id=message["id"],
                output_index=index,
                content_index=0,
                part=part,
            )
            + self._event("response.output_item.done", output_index=index, item=copy.deepcopy(message))
        )


def _usage(finished: dict[str, Any]) -> dict[str, Any]:
    prompt, completion = int(finished["prompt_tokens"]), int(finished["completion_tokens"])
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }

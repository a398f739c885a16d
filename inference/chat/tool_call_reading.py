"""A local model's calls to tools, read from its text as it streams.

A version's tool-call format says how its output calls a tool; the Hermes / Qwen format
writes `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`. Text outside the tags goes
on as text as soon as it cannot be the start of a tag; each call inside becomes OpenAI's tool
call (an id, the function's name, its arguments as a JSON string) once its closing tag is
read. What the model wrote that is not a call to an offered tool (bad JSON, another name, a
call never closed) is passed on as the text it is.
"""

import json
from collections.abc import Awaitable, Callable
from typing import Any

from inference.engines.base import TokenLogprob
from inference.engines.constraints import TOOL_CALL_TAGS

OnTexts = Callable[[list[str]], Awaitable[None]]
OnToolCalls = Callable[[list[dict[str, Any]]], Awaitable[None]]


def _partial_tag(text: str, tag: str) -> int:
    """How many characters at the end of `text` could begin `tag`."""
    for length in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:length]):
            return length
    return 0


class ToolCallReader:
    """Splits one answer's texts into text and calls; `calls` counts the calls made."""

    def __init__(
        self,
        *,
        tool_call_format: str,
        call_id_prefix: str,
        names: frozenset[str],
        on_texts: OnTexts,
        on_tool_calls: OnToolCalls,
    ) -> None:
        self.opening, self.closing = TOOL_CALL_TAGS[tool_call_format]
        self.call_id_prefix = call_id_prefix
        self.names = names
        self.on_texts = on_texts
        self.on_tool_calls = on_tool_calls
        self.pending = ""  # read, not yet passed on
        self.inside = False  # after an opening tag, waiting for its closing one
        self.calls = 0

    async def feed(self, texts: list[str], logprobs: list[TokenLogprob] | None = None, /) -> None:
        """Take the next texts. A local version offered tools is never asked for log
        probabilities (`chat_prepare` refuses both together), so `logprobs` is never given."""
        self.pending += "".join(texts)
        while True:
            tag = self.closing if self.inside else self.opening
            at = self.pending.find(tag)
            if at == -1:
                break
            before, self.pending = self.pending[:at], self.pending[at + len(tag) :]
            if self.inside:
                await self._call(before)
            elif before:
                await self.on_texts([before])
            self.inside = not self.inside
        if not self.inside:
            ready = len(self.pending) - _partial_tag(self.pending, self.opening)
            if ready > 0:
                text, self.pending = self.pending[:ready], self.pending[ready:]
                await self.on_texts([text])

    async def finish(self) -> None:
        """The answer ended: what is still held (a call never closed, half a tag) is text."""
        held = (self.opening if self.inside else "") + self.pending
        self.pending, self.inside = "", False
        if held:
            await self.on_texts([held])

    async def _call(self, body: str) -> None:
        try:
            call = json.loads(body)
            name, arguments = call["name"], call.get("arguments", {})
        except (ValueError, TypeError, KeyError):
            name, arguments = None, None
        if name not in self.names:
            await self.on_texts([self.opening + body + self.closing])
            return
        await self.on_tool_calls(
            [
                {
                    "index": self.calls,
                    "id": f"{self.call_id_prefix}_{self.calls}",
                    "type": "function",
                    "function": {
                        "name": name,
                        "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments),
                    },
                }
            ]
        )
        self.calls += 1

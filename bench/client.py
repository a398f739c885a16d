"""What the benchmark client does to the served stack: stream chats over the websocket and SSE."""

import asyncio
import json
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import websockets


@dataclass
class StreamRecord:
    """One chat as the client saw it."""

    indices: list[int] = field(default_factory=list)
    done: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    started_at: float = 0.0
    first_token_at: float = 0.0
    last_token_at: float = 0.0
    ended_at: float = 0.0

    @property
    def tokens(self) -> int:
        return len(self.indices)

    @property
    def complete(self) -> bool:
        """Every token arrived, once, in order, and `done` counted the same number."""
        return (
            self.done is not None
            and self.indices == list(range(len(self.indices)))
            and self.done["usage"]["completion_tokens"] == len(self.indices)
        )


async def chat_stream(ws_url: str, token: str, *, max_tokens: int, client_id: str = "bench") -> StreamRecord:
    """Open a connection, run one chat to its end, and record what arrived."""
    async with _connected(ws_url, token) as ws:
        return await _chat(ws, max_tokens=max_tokens, client_id=client_id)


def _connected(ws_url: str, token: str) -> Any:
    return websockets.connect(ws_url, additional_headers={"Authorization": f"Bearer {token}"})


async def _chat(ws: Any, *, max_tokens: int, client_id: str) -> StreamRecord:
    """One chat on an open connection, timed from its `chat` frame to its `done`."""
    record = StreamRecord()
    record.started_at = time.perf_counter()
    await ws.send(
        json.dumps(
            {
                "type": "chat",
                "id": client_id,
                "model": "demo-tiny",
                "messages": [{"role": "user", "content": "Benchmark, please stream."}],
                "max_tokens": max_tokens,
                "temperature": 0.0,
            }
        )
    )
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 120))
        if frame["type"] == "token":
            record.last_token_at = time.perf_counter()
            record.first_token_at = record.first_token_at or record.last_token_at
            record.indices.append(frame["index"])
        elif frame["type"] == "done":
            record.done = frame
            break
        elif frame["type"] == "error":
            record.error = frame
            break
    record.ended_at = time.perf_counter()
    return record


@dataclass
class Streams:
    """`count` chats run at once, as the client saw them."""

    records: list[StreamRecord]
    # From the first chat frame sent to the last chat's end: the connections were open before
    # (as a chat client keeps its connection), as P3 times one chat.
    elapsed: float
    # Opening the connections, all at once, before that.
    connecting: float


async def chat_streams(ws_url: str, token: str, *, count: int, max_tokens: int) -> Streams:
    """`count` chats at once, each on its own connection, opened first."""
    async with AsyncExitStack() as connections:
        started = time.perf_counter()
        sockets = await asyncio.gather(
            *(connections.enter_async_context(_connected(ws_url, token)) for _ in range(count))
        )
        connected = time.perf_counter()
        records = await asyncio.gather(
            *(_chat(ws, max_tokens=max_tokens, client_id=f"s{index}") for index, ws in enumerate(sockets))
        )
        return Streams(
            records=list(records), elapsed=time.perf_counter() - connected, connecting=connected - started
        )


async def sse_stream(base_url: str, token: str, *, max_tokens: int) -> StreamRecord:
    """One streamed /v1/chat/completions, recorded like a websocket chat (one index per token)."""
    import httpx

    record = StreamRecord()
    body = {
        "model": "demo-tiny",
        "messages": [{"role": "user", "content": "Benchmark, please stream."}],
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    async with httpx.AsyncClient(timeout=120) as client:
        record.started_at = time.perf_counter()
        async with client.stream(
            "POST", f"{base_url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {token}"}
        ) as response:
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[len("data: ") :])
                if chunk.get("error"):
                    record.error = chunk["error"]
                    break
                if chunk.get("usage"):
                    record.done = {"usage": chunk["usage"]}
                for choice in chunk.get("choices", []):
                    if "content" in choice["delta"] and "role" not in choice["delta"]:
                        record.indices.append(len(record.indices))
        record.ended_at = time.perf_counter()
    return record

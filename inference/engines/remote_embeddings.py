"""Embeddings from a remote OpenAI-compatible server, called from the event loop.

The same rules as remote chats (`remote_call`: the outbound guard, the circuit breaker,
retries while nothing was answered, never a redirect). The answer is read strictly: one
vector of numbers per input, all of one length, in the inputs' order (by `index`); anything
else is malformed. Reported usage is believed only within what the inputs could have cost.
"""

from typing import Any

import orjson

from inference.engines.deployment_load import prompt_tokens_estimate
from inference.engines.embedding import Embeddings
from inference.engines.remote import (
    OpenAICompatibleEngine,
    RemoteMalformed,
    _reported_count,
)
from inference.engines.remote_async import remote_call, remote_whole_read
from inference.engines.remote_deployments import Attempt, RemoteDeployments


async def remote_embed(
    upstreams: RemoteDeployments,
    *,
    inputs: list[str],
    dimensions: int | None,
    max_seconds: float | None,
    attempts: list[Attempt] | None = None,
) -> Embeddings:
    """One vector per input, asked of the version's upstreams as floats; raises
    RemoteUnavailable or RemoteMalformed."""
    most_tokens = sum(len(text.encode()) for text in inputs) + len(inputs)  # a token per byte at most

    async def attempt(engine: OpenAICompatibleEngine) -> Embeddings:
        body: dict[str, Any] = {"model": engine.model, "input": inputs, "encoding_format": "float"}
        if dimensions is not None:
            body["dimensions"] = dimensions
        content = await remote_whole_read(engine, body, url=engine.embeddings_url, max_seconds=max_seconds)
        return _read(content, inputs=len(inputs), most_tokens=most_tokens)

    return await remote_call(
        upstreams,
        attempt,
        attempts=attempts,
        tokens=prompt_tokens_estimate(prompt_bytes=most_tokens),
        seconds=max_seconds,
        used=lambda embeddings: embeddings.prompt_tokens,
    )


def _read(content: bytes, *, inputs: int, most_tokens: int) -> Embeddings:
    try:
        answer = orjson.loads(content)
        rows = sorted(answer["data"], key=lambda row: row["index"])
        vectors = [row["embedding"] for row in rows]
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        raise RemoteMalformed("the upstream sent malformed embeddings") from None
    if len(vectors) != inputs or [row["index"] for row in rows] != list(range(inputs)):
        raise RemoteMalformed("the upstream sent malformed embeddings (not one per input)")
    if not all(_numbers(vector) and len(vector) == len(vectors[0]) for vector in vectors):
        raise RemoteMalformed("the upstream sent malformed embeddings (not vectors of numbers)")
    usage = answer.get("usage") if isinstance(answer.get("usage"), dict) else None
    reported = _reported_count(usage, "prompt_tokens")
    return Embeddings(
        vectors=[[float(value) for value in vector] for vector in vectors],
        prompt_tokens=min(most_tokens if reported is None else reported, most_tokens),
    )


def _numbers(vector: Any) -> bool:
    return (
        isinstance(vector, list)
        and bool(vector)
        and all(isinstance(value, int | float) and not isinstance(value, bool) for value in vector)
    )

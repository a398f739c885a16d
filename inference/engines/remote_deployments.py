"""A remote version's upstreams (its deployments), and the order a call tries them in.

Each call tries the deployments in an order drawn by weight (a deployment of weight 3 comes
first three times as often as one of weight 1), skipping those whose circuit breaker is open;
a failure before any answer (a connection error, 429, 5xx, a timeout) moves on to the next,
so one failing server costs a request a retry, not an error. After the first token a failure
ends the answer: a retry elsewhere would send a second, different one.
"""

import random
from collections.abc import Iterator
from dataclasses import dataclass, field

from inference.engines.base import (
    ChatMessage,
    GenerationParams,
    GenerationResult,
    StopCheck,
    TokenCallback,
    TokenLogprob,
    token_arguments,
)
from inference.engines.remote import OpenAICompatibleEngine, RemoteMalformed, RemoteUnavailable


@dataclass(frozen=True)
class Upstream:
    engine: OpenAICompatibleEngine
    weight: int = 1

    @property
    def name(self) -> str:
        """What the audit record calls it: its base URL (never its key)."""
        return self.engine.base_url


@dataclass
class Attempt:
    """One try of one call: which upstream, and why it failed (None: it answered)."""

    upstream: str
    error: str | None = None

    def as_record(self) -> dict[str, str]:
        return {"upstream": self.upstream, "outcome": self.error or "answered"}


class RemoteDeployments:
    """The upstreams serving one remote version; an `Engine` for the worker's path too."""

    def __init__(self, upstreams: list[Upstream], *, rng: random.Random | None = None) -> None:
        if not upstreams:
            raise ValueError("a remote version needs at least one upstream")
        self.upstreams = upstreams
        self._rng = rng or random.Random()  # noqa: S311 - spreading load, not secrecy

    @property
    def max_retries(self) -> int:
        return self.upstreams[0].engine.max_retries

    @property
    def retry_backoff(self) -> float:
        return self.upstreams[0].engine.retry_backoff

    def order(self) -> list[Upstream]:
        """Every upstream once, in an order drawn by weight."""
        left, ordered = list(self.upstreams), []
        while left:
            chosen = self._rng.choices(range(len(left)), weights=[upstream.weight for upstream in left])[0]
            ordered.append(left.pop(chosen))
        return ordered

    def tries(self) -> Iterator[Upstream]:
        """The upstreams to try, one per try: the drawn order, over again while tries last."""
        ordered = self.order()
        for number in range(max(len(ordered), self.max_retries + 1)):
            yield ordered[number % len(ordered)]

    def close(self) -> None:
        for upstream in self.upstreams:
            upstream.engine.close()

    def generate_stream(
        self,
        *,
        messages: list[ChatMessage],
        params: GenerationParams,
        on_token: TokenCallback,
        should_stop: StopCheck,
    ) -> GenerationResult:
        """A worker's call: each upstream in the drawn order (its own retries and breaker as
        `OpenAICompatibleEngine.generate_stream` has them), the next while nothing was sent on."""
        sent = _Sent(on_token)
        error: RemoteUnavailable | None = None
        for upstream in self.order():
            try:
                return upstream.engine.generate_stream(
                    messages=messages, params=params, on_token=sent, should_stop=should_stop
                )
            except RemoteMalformed:
                raise
            except RemoteUnavailable as unavailable:
                if sent.any:
                    raise
                error = unavailable
        assert error is not None  # noqa: S101 - at least one upstream, and each failed
        raise error


@dataclass
class _Sent:
    """Passes texts on, noting whether any were."""

    on_token: TokenCallback
    any: bool = field(default=False)

    def __call__(self, texts: list[str], logprobs: list[TokenLogprob] | None = None, /) -> None:
        self.any = self.any or bool(texts)
        self.on_token(*token_arguments(texts, logprobs))

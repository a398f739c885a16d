"""A remote version's upstreams (its deployments), and the order a call tries them in.

Each call tries the deployments in an order drawn by weight (a deployment of weight 3 comes
first three times as often as one of weight 1), or, where the model routes to the least busy,
the one with the fewest calls in flight first; it skips those whose circuit breaker is open
and those at their own limits (calls at once, tokens a minute: `deployment_load`). A failure
before any answer (a connection error, 429, 5xx, a timeout) moves on to the next, so one
failing server costs a request a retry, not an error. After the first token a failure ends
the answer: a retry elsewhere would send a second, different one.
"""

import functools
import random
from collections import Counter
from dataclasses import dataclass, field

from gatehouse.tracing import tracing_on, upstream_call
from inference.engines.base import (
    ChatMessage,
    GenerationParams,
    GenerationResult,
    StopCheck,
    TokenCallback,
    TokenLogprob,
    token_arguments,
)
from inference.engines.deployment_load import (
    DeploymentLimits,
    Lease,
    deployment_give_back,
    deployment_key,
    deployment_take,
    deployment_take_async,
    prompt_tokens_estimate,
)
from inference.engines.remote import OpenAICompatibleEngine, RemoteMalformed, RemoteUnavailable

# How a version's deployments are chosen among (a model's `routing`).
ROUTING_WEIGHTED = "weighted"
ROUTING_LEAST_BUSY = "least_busy"
AT_LIMIT = "every deployment is at its limit (calls at once or tokens a minute)"


@dataclass(frozen=True)
class Upstream:
    engine: OpenAICompatibleEngine
    weight: int = 1
    max_concurrency: int | None = None
    tokens_per_minute: int | None = None

    @property
    def name(self) -> str:
        """What the audit record calls it: its base URL (never its key)."""
        return self.engine.base_url

    @functools.cached_property
    def limits(self) -> DeploymentLimits:
        """Its name in the shared counts, and its limits (worked out once)."""
        return DeploymentLimits(
            key=deployment_key(base_url=self.engine.base_url, remote_model=self.engine.model),
            max_concurrency=self.max_concurrency,
            tokens_per_minute=self.tokens_per_minute,
        )


@dataclass
class Attempt:
    """One try of one call: which upstream, and why it failed (None: it answered)."""

    upstream: str
    error: str | None = None

    def as_record(self) -> dict[str, str]:
        return {"upstream": self.upstream, "outcome": self.error or "answered"}


class RemoteDeployments:
    """The upstreams serving one remote version; an `Engine` for the worker's path too."""

    def __init__(
        self,
        upstreams: list[Upstream],
        *,
        routing: str = ROUTING_WEIGHTED,
        rng: random.Random | None = None,
    ) -> None:
        if not upstreams:
            raise ValueError("a remote version needs at least one upstream")
        self.upstreams = upstreams
        self.least_busy = routing == ROUTING_LEAST_BUSY
        # The weighted draw; a test may seed it so an order repeats.
        self.rng = rng or random.Random()  # noqa: S311 - spreading load, not secrecy

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
            chosen = self.rng.choices(range(len(left)), weights=[upstream.weight for upstream in left])[0]
            ordered.append(left.pop(chosen))
        return ordered

    @property
    def tries(self) -> int:
        """How many calls one request may make: each upstream once, or the retries, the more."""
        return max(len(self.upstreams), self.max_retries + 1)

    def candidates(self, order: list[Upstream], *, failures: Counter[str], out: set[str]) -> list[Upstream]:
        """Whom the next try may call, in the order to prefer them: those not ruled out in this
        call (`out`: refused address, open circuit), the least failed first (a retry goes
        elsewhere while there is an elsewhere)."""
        usable = [upstream for upstream in order if upstream.name not in out]
        if not usable:
            return []
        fewest = min(failures[upstream.name] for upstream in usable)
        return [upstream for upstream in usable if failures[upstream.name] == fewest]

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
        arriving_with: int = 0,  # one upstream request per call: nothing to gather
    ) -> GenerationResult:
        """A worker's call: each upstream in the drawn order (its own retries and breaker as
        `OpenAICompatibleEngine.generate_stream` has them), the next while nothing was sent on."""
        sent = _Sent(on_token)
        error = RemoteUnavailable(AT_LIMIT)
        left = self.order()
        tokens = prompt_tokens_estimate(
            prompt_bytes=sum(len(message.content.encode()) for message in messages)
        )
        # Its tries' client spans say whom they asked, and which try each was (gatehouse.tracing).
        traced = upstream_call() if tracing_on() else None
        try:
            while left:
                taken = self.take(left, tokens=tokens, seconds=params.max_seconds)
                if taken is None:
                    break
                upstream, lease = taken
                left.remove(upstream)
                if traced is not None:
                    traced.target(base_url=upstream.engine.base_url, model=upstream.engine.model)
                used = 0
                try:
                    result = upstream.engine.generate_stream(
                        messages=messages, params=params, on_token=sent, should_stop=should_stop
                    )
                    used = result.prompt_tokens + result.completion_tokens
                    return result
                except RemoteMalformed:
                    raise
                except RemoteUnavailable as unavailable:
                    if sent.any:
                        raise
                    error = unavailable
                finally:
                    deployment_give_back(lease=lease, tokens=used)
        finally:
            if traced is not None:
                traced.end()
        raise error

    def take(
        self, candidates: list[Upstream], *, tokens: int, seconds: float | None
    ) -> tuple[Upstream, Lease] | None:
        """The candidate to call next and its lease (`deployment_take`), or None: all at a limit."""
        taken = deployment_take(
            candidates=[upstream.limits for upstream in candidates],
            least_busy=self.least_busy,
            tokens=tokens,
            seconds=seconds,
        )
        return None if taken is None else (candidates[taken[0]], taken[1])

    async def take_async(
        self, candidates: list[Upstream], *, tokens: int, seconds: float | None
    ) -> tuple[Upstream, Lease] | None:
        """`take` on an event loop."""
        taken = await deployment_take_async(
            candidates=[upstream.limits for upstream in candidates],
            least_busy=self.least_busy,
            tokens=tokens,
            seconds=seconds,
        )
        return None if taken is None else (candidates[taken[0]], taken[1])


@dataclass
class _Sent:
    """Passes texts on, noting whether any were."""

    on_token: TokenCallback
    any: bool = field(default=False)

    def __call__(self, texts: list[str], logprobs: list[TokenLogprob] | None = None, /) -> None:
        self.any = self.any or bool(texts)
        self.on_token(*token_arguments(texts, logprobs))

"""Requests waiting for a model, the readers that serve them, and static batches.

A GPU (and even a CPU) does one forward pass for eight sequences in about the time it
takes for one, so eight streams batched together get close to eight times the tokens per
second of eight streams taking turns. Each engine owns a scheduler. `RequestScheduler`
holds what every kind shares: the waiting list, and the readers. `StaticBatchScheduler`
runs whole batches; continuous batches (requests joining between steps) are in
`inference.engines.continuous`.

Static batches: a batch thread takes up to `max_batch_size` waiting requests once no new
one has arrived for `gather_seconds` (at most ten such gaps after it began gathering), and
runs them as one batch until its last row ends. While a batch runs, new requests wait for
it, so they can share the next one. Only a request that has waited
`overflow_after_seconds` (or a full batch of them) starts a second concurrent batch, up to
`max_concurrent_batches`: two half-full batches on one device are slower than one full
one, but nobody waits behind a long generation for long.

The thread that submitted a request does the request's own I/O: it receives the token
texts through a bounded queue, hands them to its callback (which sends them to the
client) and polls for cancellation. The batch thread only computes and never waits for a
reader: one a whole buffer behind is cancelled, so a slow client never holds back a batch.

The reader hands on every text waiting at the time, then lets the next ones gather before
it looks again: the first token leaves at once, later ones at most a gathering later, and
each hop to the client (a channel-layer message, a Redis round trip) carries every token of
the steps in between instead of one. The reader sleeps while they gather, so the batch thread
is not handing it one token at a time; the request's end wakes it, so a stream's last texts
and its end are not held back. A gathering lasts `GATHER_SECONDS` per reader the
model serves at the time, at most `GATHER_MAX_SECONDS`: the more streams share a model's
steps, the slower each one's steps, and the more a hop costs beside a step; so the model's
readers together make about the same number of hops per second however many they are.
"""

import contextlib
import logging
import math
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from inference.engines.base import (
    FinishReason,
    GenerationParams,
    GenerationResult,
    StopCheck,
    TokenCallback,
    TokenLogprob,
    token_arguments,
)
from inference.engines.constraints import RowConstraint

logger = logging.getLogger(__name__)

# How far a row's generation may run ahead of its reader, in tokens, before the reader is
# judged too slow. Readers are slowed in turn by the channel layer's bounded channels and
# the websocket's write buffer, so memory is bounded all the way to the client.
_ROW_BUFFER_TOKENS = 1024
# A batch gathers companions for at most this many quiet gaps (`gather_seconds`).
_GATHER_CAP_GAPS = 10
# A request that waits (for a batch row, or a slow step) tells its reader it is alive this
# often, so watchers can tell a dead worker from a busy one within seconds.
HEARTBEAT_SECONDS = 2.0
# How often a waiting request asks whether it was cancelled.
_CANCEL_POLL_SECONDS = 0.02
# After handing texts on, how long the reader lets the next ones gather, per reader of the
# model, and at most (see the module's doc).
GATHER_SECONDS = 0.005
GATHER_MAX_SECONDS = 0.05


class _End:
    """Queued by `BatchRequest.finish`, so a reader waiting for a text wakes at once."""


_END = _End()
# What the batch thread queues for a reader: a token's text, or its text and log probability
# (where they were asked for), or the end.
_Queued = str | tuple[str, TokenLogprob] | _End


@dataclass
class _Drained:
    texts: list[str] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    # The end mark was among them: nothing follows.
    ended: bool = False


def _drain(texts: "queue.Queue[_Queued]") -> _Drained:
    """Wait briefly for one text, then take every other one already queued behind it."""
    drained = _Drained()
    try:
        item = texts.get(timeout=_CANCEL_POLL_SECONDS)
    except queue.Empty:
        return drained
    while True:
        if isinstance(item, _End):
            drained.ended = True
            return drained
        if isinstance(item, tuple):
            drained.texts.append(item[0])
            drained.logprobs.append(item[1])
        else:
            drained.texts.append(item)
        try:
            item = texts.get_nowait()
        except queue.Empty:
            return drained


def _gathering_end(now: float, seconds: float) -> float:
    """When a gathering that begins `now` ends: on the model's grid of `seconds` (the monotonic
    clock's multiples of it), at least half a gathering away.

    The readers of one model then hand on their hops at the same instants, so the web process
    and the client wake once for all the streams' messages instead of once for each, at
    staggered times; a stream's hops stay a gathering apart (its first is off the grid).
    """
    if seconds <= 0:
        return now
    return math.ceil((now + seconds / 2) / seconds) * seconds


@dataclass(eq=False)
class BatchRequest:
    """One generation inside a batch: its prompt, its limits and its channel back."""

    prompt_ids: list[int]
    params: GenerationParams
    submitted_at: float = field(default_factory=time.monotonic)
    # One place more than the buffer: `finish` always finds room for its end mark.
    texts: "queue.Queue[_Queued]" = field(default_factory=lambda: queue.Queue(maxsize=_ROW_BUFFER_TOKENS + 1))
    cancelled: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    result: GenerationResult | None = None
    error: BaseException | None = None
    # The grammar its tokens must follow (a structured output), or None.
    constraint: RowConstraint | None = None
    # Its own random generator, seeded (`params.seed`): its samples do not depend on the batch.
    generator: Any = None
    # How many other requests its caller was starting with it (`Engine.generate_stream`).
    arriving_with: int = 0

    def emit(self, text: str, logprob: TokenLogprob | None = None) -> bool:
        """Queue one token's text (and log probability) for the reader; False once the
        request was cancelled.

        Never blocks: the batch thread serves every row, and one slow reader must not stall
        the others. A reader a whole buffer behind is too slow to serve; its request is
        cancelled (memory stays bounded by the buffer).
        """
        if self.cancelled.is_set():
            return False
        if self.texts.qsize() >= _ROW_BUFFER_TOKENS:
            logger.warning("a reader fell %d tokens behind; its generation is cancelled", _ROW_BUFFER_TOKENS)
            self.cancelled.set()
            return False
        # Room is certain: only the batch thread puts, and the check above leaves a place.
        self.texts.put_nowait(text if logprob is None else (text, logprob))
        return True

    def finish(self, *, result: GenerationResult | None = None, error: BaseException | None = None) -> None:
        self.result, self.error = result, error
        self.finished.set()
        with contextlib.suppress(queue.Full):  # a full buffer wakes its reader anyway
            self.texts.put_nowait(_END)


BatchRunner = Callable[[list[BatchRequest]], None]


class RequestScheduler:
    """Requests waiting for a model, and the readers serving them; subclasses run the model.

    `_loop` runs on up to `_thread_count` daemon threads, started on the first requests.
    """

    _thread_count = 1

    def __init__(self, *, max_batch_size: int, name: str) -> None:
        self._max_batch_size = max(1, max_batch_size)
        self._name = name
        self._pending: list[BatchRequest] = []
        self._ready = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._closed = False
        # Requests whose readers are being served (their threads are in `run`).
        self._readers = 0
        self._readers_lock = threading.Lock()
        # How many batches (static) or admissions (continuous) of each size ran.
        self.batch_sizes: Counter[int] = Counter()

    def run(
        self, request: BatchRequest, *, on_token: TokenCallback, should_stop: StopCheck
    ) -> GenerationResult:
        """Submit `request` and serve its reader until it ends; the calling thread does the I/O.

        `on_token` gets an empty list every HEARTBEAT_SECONDS while nothing else arrives.
        Cancellation is polled every poll interval, before delivering; once cancelled, what
        the batch already queued is dropped, and the result counts the tokens delivered.
        If `on_token` raises (the reader is gone), the request is cancelled and the error
        propagates once its batch row has stopped.
        """
        self._submit(request)
        with self._readers_lock:
            self._readers += 1
        try:
            return self._serve(request, on_token=on_token, should_stop=should_stop)
        finally:
            with self._readers_lock:
                self._readers -= 1

    def _gathering_seconds(self) -> float:
        # The same for every reader of the model at a time, so their hops fall on one grid.
        return min(GATHER_SECONDS * max(1, self._readers), GATHER_MAX_SECONDS)

    def _serve(
        self, request: BatchRequest, *, on_token: TokenCallback, should_stop: StopCheck
    ) -> GenerationResult:
        delivered = 0
        last_call = next_poll = gathered_until = time.monotonic()
        ended = False
        try:
            while not ended and not request.cancelled.is_set():
                pause = gathered_until - time.monotonic()
                if pause > 0:
                    # Let the next texts gather; the row's end cuts it short (its last texts
                    # leave at once).
                    request.finished.wait(pause)
                drained = _drain(request.texts)
                texts, ended = drained.texts, drained.ended
                # Asking is a cache read (Redis in production): at most once per poll interval,
                # also when the row has ended meanwhile (a cancel still stops what is left).
                now = time.monotonic()
                if now >= next_poll:
                    next_poll = now + _CANCEL_POLL_SECONDS
                    if should_stop():
                        request.cancelled.set()
                        continue
                if texts or now - last_call >= HEARTBEAT_SECONDS:
                    # An empty call is a heartbeat: the generation is alive, only waiting.
                    asked = request.params.logprobs is not None
                    on_token(*token_arguments(texts, drained.logprobs if asked else None))
                    delivered += len(texts)
                    last_call = time.monotonic()
                    if texts:
                        gathered_until = _gathering_end(now, self._gathering_seconds())
            request.finished.wait()
        except BaseException:
            request.cancelled.set()
            request.finished.wait()
            raise
        if request.error is not None:
            raise request.error
        result = request.result
        assert result is not None  # noqa: S101 - finish() sets one of the two
        if request.cancelled.is_set():
            return GenerationResult(result.prompt_tokens, delivered, FinishReason.CANCELLED)
        return result

    def close(self) -> None:
        """Stop the batch threads once their current batch ends (the engine is being unloaded)."""
        with self._ready:
            self._closed = True
            for request in self._pending:
                request.finish(error=RuntimeError("the model was unloaded before the request ran"))
            self._pending.clear()
            self._ready.notify_all()

    def _submit(self, request: BatchRequest) -> None:
        with self._ready:
            if self._closed:
                raise RuntimeError("the model was unloaded")
            self._pending.append(request)
            if len(self._threads) < self._thread_count:
                thread = threading.Thread(
                    target=self._loop, name=f"{self._name}-batch-{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
            self._ready.notify_all()

    def _take_ready(self, batch: list[BatchRequest]) -> list[BatchRequest]:
        """End the requests cancelled while they waited (the client left) without running them."""
        for request in batch:
            if request.cancelled.is_set():
                request.finish(result=GenerationResult(len(request.prompt_ids), 0, FinishReason.CANCELLED))
        return [request for request in batch if not request.finished.is_set()]

    def _loop(self) -> None:  # pragma: no cover - every scheduler defines its own
        raise NotImplementedError


class StaticBatchScheduler(RequestScheduler):
    """Batches that run whole: `run_batch` gets the rows and must finish every one of them."""

    def __init__(
        self,
        *,
        run_batch: BatchRunner,
        max_batch_size: int,
        max_concurrent_batches: int,
        gather_seconds: float,
        overflow_after_seconds: float,
        name: str,
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, name=name)
        self._run_batch = run_batch
        self._thread_count = max(1, max_concurrent_batches)
        self._gather_seconds = max(0.0, gather_seconds)
        self._overflow_after_seconds = max(0.0, overflow_after_seconds)
        self._running = 0

    def _startable(self, now: float) -> bool:
        """Whether a batch may start now: nothing else runs, a batch is full, or someone waited long."""
        if not self._pending:
            return False
        return (
            self._running == 0
            or len(self._pending) >= self._max_batch_size
            or now - self._pending[0].submitted_at >= self._overflow_after_seconds
        )

    def _take(self) -> list[BatchRequest] | None:
        """Wait until a batch may start, gather companions, take them; None once closed."""
        with self._ready:
            while True:
                while not self._closed and not self._startable(time.monotonic()):
                    oldest = self._pending[0].submitted_at if self._pending else None
                    # Wake when the oldest request's overflow wait ends, or when notified.
                    self._ready.wait(
                        None
                        if oldest is None
                        else max(0.001, oldest + self._overflow_after_seconds - time.monotonic())
                    )
                if self._closed:
                    return None
                # Gather while requests keep arriving (a burst from many clients trickles in
                # over tens of milliseconds), up to a cap; a lone request waits one quiet gap.
                cap = time.monotonic() + _GATHER_CAP_GAPS * self._gather_seconds
                while 0 < len(self._pending) < self._max_batch_size and not self._closed:
                    quiet_until = self._pending[-1].submitted_at + self._gather_seconds
                    remaining = min(cap, quiet_until) - time.monotonic()
                    if remaining <= 0:
                        break
                    self._ready.wait(remaining)
                if self._closed:
                    return None
                if self._pending:  # another batch thread may have taken them meanwhile
                    break
            batch = self._pending[: self._max_batch_size]
            del self._pending[: len(batch)]
            self._running += 1
        return self._take_ready(batch)

    def _loop(self) -> None:
        while (batch := self._take()) is not None:
            try:
                if batch:
                    self.batch_sizes[len(batch)] += 1
                    self._run_batch(batch)
            except Exception as exc:
                logger.exception("a batch of %d generations failed", len(batch))
                for request in batch:
                    if not request.finished.is_set():
                        request.finish(error=exc)
            finally:
                with self._ready:
                    self._running -= 1
                    self._ready.notify_all()
            for request in batch:
                if not request.finished.is_set():  # pragma: no cover - a runner must finish every row
                    request.finish(error=RuntimeError("the batch ended without a result for this request"))

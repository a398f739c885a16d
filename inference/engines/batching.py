"""Group concurrent requests to one model into batches, run by a few batch threads.

A GPU (and even a CPU) does one forward pass for eight sequences in about the time it
takes for one, so eight streams batched together get close to eight times the tokens per
second of eight streams taking turns. Each engine owns a scheduler: requests wait in a
list, and each of `max_concurrent_batches` threads takes up to `max_batch_size` of them,
after waiting `gather_seconds` for companions, and runs them as one batch.

A request that arrives while every batch thread is busy waits for the next free one; a
second batch thread means it rarely waits for a long generation to finish.

The thread that submitted a request does the request's own I/O: it receives the token
texts through a bounded queue, hands them to its callback (which sends them to the
client) and polls for cancellation. The batch thread only computes, so one slow reader
does not hold back the other rows until its queue is full.
"""

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from inference.engines.base import (
    FinishReason,
    GenerationParams,
    GenerationResult,
    StopCheck,
    TokenCallback,
)

logger = logging.getLogger(__name__)

# How far a row's generation may run ahead of its reader, in tokens.
_ROW_BUFFER_TOKENS = 256
# How often a waiting request asks whether it was cancelled.
_CANCEL_POLL_SECONDS = 0.02


@dataclass(eq=False)
class BatchRequest:
    """One generation inside a batch: its prompt, its limits and its channel back."""

    prompt_ids: list[int]
    params: GenerationParams
    texts: "queue.Queue[str]" = field(default_factory=lambda: queue.Queue(maxsize=_ROW_BUFFER_TOKENS))
    cancelled: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    result: GenerationResult | None = None
    error: BaseException | None = None

    def emit(self, text: str) -> bool:
        """Queue one token's text for the reader; False once the request was cancelled.

        Blocks while the reader is a full buffer behind: back-pressure, bounded memory.
        """
        while not self.cancelled.is_set():
            try:
                self.texts.put(text, timeout=0.1)
            except queue.Full:
                continue
            return True
        return False

    def finish(self, *, result: GenerationResult | None = None, error: BaseException | None = None) -> None:
        self.result, self.error = result, error
        self.finished.set()


BatchRunner = Callable[[list[BatchRequest]], None]


class BatchScheduler:
    def __init__(
        self,
        *,
        run_batch: BatchRunner,
        max_batch_size: int,
        max_concurrent_batches: int,
        gather_seconds: float,
        name: str,
    ) -> None:
        self._run_batch = run_batch
        self._max_batch_size = max(1, max_batch_size)
        self._max_concurrent_batches = max(1, max_concurrent_batches)
        self._gather_seconds = max(0.0, gather_seconds)
        self._name = name
        self._pending: list[BatchRequest] = []
        self._ready = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._closed = False
        # How many batches of each size ran: what batching achieves under real traffic.
        self.batch_sizes: Counter[int] = Counter()

    def run(
        self, request: BatchRequest, *, on_token: TokenCallback, should_stop: StopCheck
    ) -> GenerationResult:
        """Submit `request` and serve its reader until it ends; the calling thread does the I/O.

        Cancellation is polled before every token and between tokens; once cancelled, what
        the batch already queued is dropped, and the result counts the tokens delivered.
        If `on_token` raises (the reader is gone), the request is cancelled and the error
        propagates once its batch row has stopped.
        """
        self._submit(request)
        delivered = 0
        try:
            while not request.cancelled.is_set():
                try:
                    text = request.texts.get(timeout=_CANCEL_POLL_SECONDS)
                except queue.Empty:
                    if request.finished.is_set() and request.texts.empty():
                        break
                    text = None
                if should_stop():
                    request.cancelled.set()
                elif text is not None:
                    on_token(text)
                    delivered += 1
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
            if len(self._threads) < self._max_concurrent_batches:
                thread = threading.Thread(
                    target=self._loop, name=f"{self._name}-batch-{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
            self._ready.notify()

    def _take(self) -> list[BatchRequest] | None:
        """Wait for work, then gather companions for up to `gather_seconds`; None once closed."""
        with self._ready:
            while not self._pending and not self._closed:
                self._ready.wait()
            if self._closed:
                return None
            deadline = time.monotonic() + self._gather_seconds
            while len(self._pending) < self._max_batch_size and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._ready.wait(remaining)
            batch = self._pending[: self._max_batch_size]
            del self._pending[: len(batch)]
        # Cancelled while waiting (the client left): end them without spending a batch row.
        for request in batch:
            if request.cancelled.is_set():
                request.finish(result=GenerationResult(len(request.prompt_ids), 0, FinishReason.CANCELLED))
        return [request for request in batch if not request.finished.is_set()]

    def _loop(self) -> None:
        while (batch := self._take()) is not None:
            if not batch:
                continue
            self.batch_sizes[len(batch)] += 1
            try:
                self._run_batch(batch)
            except Exception as exc:
                logger.exception("a batch of %d generations failed", len(batch))
                for request in batch:
                    if not request.finished.is_set():
                        request.finish(error=exc)
            for request in batch:
                if not request.finished.is_set():  # pragma: no cover - a runner must finish every row
                    request.finish(error=RuntimeError("the batch ended without a result for this request"))

"""Send a generation to where it runs: a thread pool here, or a Celery worker (pushed from the
event loop onto a Redis broker, `inference.broker_push`; through Celery's producer onto any other).

Each model's waiting line is bounded (GATEHOUSE_INFERENCE_MAX_QUEUE): past it a request
is refused at once with `InferenceBusy`, which clients see as `unavailable` (HTTP 503),
instead of waiting behind a queue that grows without limit.
"""

import logging
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import TYPE_CHECKING, cast

from asgiref.sync import sync_to_async
from django.conf import settings

from gatehouse.process_priority import thread_priority_lower
from gatehouse.tracing import generation_span, handoff_context, tracing_on
from inference.broker_push import broker_push, broker_push_available
from inference.generation import GenerationJob, generation_run
from inference.relay import RelaySender

if TYPE_CHECKING:
    from opentelemetry.context import Context

logger = logging.getLogger(__name__)


class InferenceBusy(Exception):
    """The model's queue is full; the request was not queued."""


def inference_queue(*, model_name: str) -> str:
    """The Celery queue of one model: `celery -A gatehouse worker -Q inference.<model>` serves it."""
    return f"inference.{model_name}"


class InprocessExecutor:
    """The embedded default's executor: a thread pool that knows how many jobs wait, per model."""

    def __init__(self, *, max_workers: int, niceness: int = 0) -> None:
        # Each thread runs below the event loop's priority (`niceness`), as a worker's do; the
        # batch threads it starts inherit that.
        self._pool = ThreadPoolExecutor(
            max_workers=max_workers,
            thread_name_prefix="gatehouse-generate",
            initializer=thread_priority_lower,
            initargs=(niceness,),
        )
        self._waiting: Counter[str] = Counter()
        self._lock = threading.Lock()

    def waiting(self, *, model_name: str) -> int:
        with self._lock:
            return self._waiting[model_name]

    def submit(self, job: GenerationJob) -> None:
        with self._lock:
            self._waiting[job.model_name] += 1
        # The trace goes with the job to its thread (a Celery task carries it in its headers).
        self._pool.submit(self._run, job, handoff_context() if tracing_on() else None)

    def _run(self, job: GenerationJob, trace_parent: "Context | None" = None) -> None:
        with self._lock:
            self._waiting[job.model_name] -= 1
        if trace_parent is None:
            generation_run(job=job, relay=RelaySender(address=job.reply_channel))
            return
        with generation_span(
            trace_parent, model=job.model_name, generation_id=job.generation_id, request_id=job.request_id
        ):
            generation_run(job=job, relay=RelaySender(address=job.reply_channel))

    def drain(self, *, timeout: float) -> bool:
        """Take no more jobs and wait up to `timeout` for the queued and running ones to end."""
        finished = threading.Event()

        def wait_for_pool() -> None:
            self._pool.shutdown(wait=True)
            finished.set()

        threading.Thread(target=wait_for_pool, name="gatehouse-drain", daemon=True).start()
        return finished.wait(timeout)


@cache
def _inprocess_executor() -> InprocessExecutor:
    return InprocessExecutor(
        max_workers=settings.GATEHOUSE_INPROCESS_WORKERS, niceness=settings.GATEHOUSE_WORKER_NICENESS
    )


def inprocess_generations_drain(*, timeout: float) -> bool:
    """At shutdown: let this process's generations end (their records written); True if they did."""
    if _inprocess_executor.cache_info().currsize == 0:
        return True  # never generated here (Celery workers do it, or nobody asked yet)
    return _inprocess_executor().drain(timeout=timeout)


def _on_workers(job_remote: bool) -> bool:
    """Whether a generation goes to Celery workers, or runs on this process's thread pool.

    Local models run where the GPUs are (workers, with the celery executor). Calling a remote
    server is I/O only, so by default the web process makes the call itself: no broker and
    no worker hop on every request (GATEHOUSE_REMOTE_GENERATION=worker sends them too).
    """
    if settings.GATEHOUSE_INFERENCE_EXECUTOR != "celery":
        return False
    return not (job_remote and settings.GATEHOUSE_REMOTE_GENERATION == "web")


def inference_queue_depth(*, model_name: str, remote: bool = False) -> int:
    """Generations waiting for the model: in the broker's queue (every replica sees the same),
    or on this process's pool."""
    if not _on_workers(remote):
        return _inprocess_executor().waiting(model_name=model_name)
    from kombu import Connection

    from gatehouse.celery import app

    queue = inference_queue(model_name=model_name)
    # The app's pool holds broker connections (the stubs call them producers).
    with cast(Connection, app.pool.acquire(block=True)) as connection:
        channel = connection.default_channel
        if connection.transport.driver_type == "redis":
            # The transport's own count: one round trip (LLEN of each priority's list; a queue
            # never declared or emptied has none, so counts 0). A passive declare asks first
            # whether the lists exist: a second round trip on every chat's dispatch.
            return int(channel._size(queue))  # type: ignore[attr-defined]
        try:
            # A passive declare reads the broker's message count without creating the queue.
            declared = channel.queue_declare(queue=queue, passive=True)  # type: ignore[attr-defined]
        except connection.channel_errors:
            # No such queue: nothing waits. AMQP closes the channel on this error; the
            # connection opens a fresh one next time.
            if connection.transport.driver_type == "amqp":
                connection.close()
            return 0
        return int(declared.message_count)


def _workers_dispatch(job: GenerationJob) -> None:
    """Queue `job` for the model's workers unless its queue is full (one thread hop for both)."""
    from inference.tasks import inference_generate

    depth = inference_queue_depth(model_name=job.model_name, remote=job.remote)
    if depth >= settings.GATEHOUSE_INFERENCE_MAX_QUEUE:
        raise InferenceBusy(f"{depth} generations are already waiting for {job.model_name}")
    # Celery passes argsrepr and kwargsrepr on to its message (its stubs do not list them).
    inference_generate.apply_async(  # type: ignore[call-arg]
        args=(job.to_payload(),),
        queue=inference_queue(model_name=job.model_name),
        # The consumer gives up after the start timeout; a worker arriving later must not
        # run a generation nobody waits for.
        expires=settings.GATEHOUSE_GENERATION_START_TIMEOUT,
        # What the task's headers show of its arguments (worker logs, `celery inspect`,
        # monitors): which generation, not the caller's address or reply inbox. Celery's own
        # repr of the whole job printed both, and took a third of the publish's CPU.
        argsrepr=job_description(job),
        kwargsrepr="{}",
    )


async def _broker_push(job: GenerationJob) -> None:
    """Queue `job` for the model's workers on the event loop, its queue's bound checked in the
    same round trip (a Redis broker: `inference.broker_push`)."""
    from inference.tasks import inference_generate

    pushed = await broker_push(
        job=job,
        queue=inference_queue(model_name=job.model_name),
        task_name=inference_generate.name,
        max_waiting=settings.GATEHOUSE_INFERENCE_MAX_QUEUE,
        describe=job_description(job),
    )
    if not pushed.queued:
        raise InferenceBusy(f"{pushed.waiting} generations are already waiting for {job.model_name}")


def job_description(job: GenerationJob) -> str:
    """How a queued job names itself to whoever reads the broker: nothing of its caller."""
    return f"(generation {job.generation_id} of {job.model_name!r}, version {job.version_id})"


def workers_dispatch_warm() -> None:
    """Pay the Celery client's one-time costs at start-up instead of in the first chats: the
    app's task registry, its result backend (found by scanning every installed package's entry
    points), the task message's builder and sender, and the broker connection that the queue's
    depth and Celery's publish share (onto a Redis broker the event loop pushes instead, on a
    connection of its own that its first chat opens). Nothing is sent.

    Measured here: about 65 ms, most of it holding the interpreter lock. Paid by the first chats
    (several at once, each in its own dispatch thread), it stalled the event loop, and so every
    request in flight, for tens of milliseconds.

    Failure mode: a broker that cannot be reached is logged, and the first chat meets it as it
    would have; the web process starts all the same. Does nothing where generations do not go
    to Celery workers.
    """
    if not _on_workers(False):
        return
    from gatehouse.celery import app

    try:
        app.finalize(auto=True)
        _ = app.backend, app.amqp.create_task_message, app.amqp.send_task_message
        inference_queue_depth(model_name="celery-warm-up")
    except Exception as error:  # noqa: BLE001 - any broker failure: the first chat will meet it
        logger.warning(
            "dispatch warm-up: the broker could not be reached (%s); the first chat will try again", error
        )


async def generation_dispatch(*, job: GenerationJob) -> None:
    """Start `job` without blocking the event loop; its events arrive in the inbox `job.reply_channel`.

    Raises `InferenceBusy` when the model's queue is full; nothing was queued then.
    """
    if _on_workers(job.remote):
        if broker_push_available():
            await _broker_push(job)
        else:
            await sync_to_async(_workers_dispatch, thread_sensitive=False)(job)
        return
    depth = _inprocess_executor().waiting(model_name=job.model_name)
    if depth >= settings.GATEHOUSE_INFERENCE_MAX_QUEUE:
        raise InferenceBusy(f"{depth} generations are already waiting for {job.model_name}")
    _inprocess_executor().submit(job)

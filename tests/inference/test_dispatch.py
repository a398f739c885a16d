"""The waiting line of each model is measured where it lives, so a bound can hold."""

import dataclasses
import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from inference.dispatch import InprocessExecutor, inference_queue, inference_queue_depth
from inference.generation import GenerationJob
from tests.profile import PRODUCTION


def _job(model_name: str) -> GenerationJob:
    return GenerationJob(
        generation_id=uuid.uuid4().hex,
        client_id="c1",
        reply_channel="nowhere",
        version_id=1,
        model_name=model_name,
        messages=[{"role": "user", "content": "hi"}],
        user_id=1,
    )


def test_the_inprocess_executor_counts_jobs_waiting_for_a_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    started: list[str] = []

    def run_blocked(*, job: GenerationJob, relay: object) -> None:
        started.append(job.generation_id)
        release.wait(timeout=30)

    monkeypatch.setattr("inference.dispatch.generation_run", run_blocked)
    executor = InprocessExecutor(max_workers=1)
    try:
        for _ in range(3):
            executor.submit(_job("busy-model"))
        while not started:
            threading.Event().wait(0.01)
        # One runs, two wait; another model's line is its own.
        assert executor.waiting(model_name="busy-model") == 2
        assert executor.waiting(model_name="other-model") == 0
        release.set()
        for _ in range(500):
            if executor.waiting(model_name="busy-model") == 0:
                break
            threading.Event().wait(0.01)
        assert executor.waiting(model_name="busy-model") == 0
    finally:
        release.set()


@pytest.fixture
def unserved_model() -> Iterator[str]:
    """A model whose queue no worker consumes; deleted afterwards."""
    from gatehouse.celery import app

    name = f"unserved-{uuid.uuid4().hex[:8]}"
    yield name
    with app.pool.acquire(block=True) as connection:
        connection.default_channel.queue_delete(inference_queue(model_name=name))


@pytest.mark.skipif(not PRODUCTION, reason="the broker's queues exist only with Celery (production profile)")
def test_the_broker_queue_depth_counts_tasks_no_worker_took(unserved_model: str) -> None:
    from inference.tasks import inference_generate

    assert inference_queue_depth(model_name=unserved_model) == 0  # never declared
    for _ in range(3):
        inference_generate.apply_async(
            args=(_job(unserved_model).to_payload(),),
            queue=inference_queue(model_name=unserved_model),
            expires=60,
        )
    assert inference_queue_depth(model_name=unserved_model) == 3


@pytest.mark.skipif(not PRODUCTION, reason="the broker's queues exist only with Celery (production profile)")
def test_the_queue_depth_is_one_round_trip_to_the_broker(
    unserved_model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read before every chat's dispatch: one write to Redis (the lists' lengths together), not
    first a look whether the queue exists."""
    from redis.connection import AbstractConnection

    from inference.tasks import inference_generate

    inference_generate.apply_async(
        args=(_job(unserved_model).to_payload(),),
        queue=inference_queue(model_name=unserved_model),
        expires=60,
    )
    inference_queue_depth(model_name=unserved_model)  # the pooled connection is open
    writes: list[object] = []
    send = AbstractConnection.send_packed_command

    def counted(self: AbstractConnection, command: object, check_health: bool = True) -> None:
        writes.append(command)
        send(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)
    assert inference_queue_depth(model_name=unserved_model) == 1
    assert len(writes) == 1


@pytest.mark.skipif(not PRODUCTION, reason="the broker exists only with Celery (production profile)")
def test_a_queued_generation_shows_the_broker_which_it_is_and_nothing_of_the_caller(
    unserved_model: str, settings: Any
) -> None:
    """Whoever reads the broker (worker logs, `celery inspect`, a monitor) sees which generation
    waits, not who asked from where, what, nor where its answer goes; the worker still gets the
    whole job."""
    from gatehouse.celery import app
    from inference.dispatch import _workers_dispatch, job_description

    settings.GATEHOUSE_INFERENCE_EXECUTOR = "celery"
    job = dataclasses.replace(
        _job(unserved_model),
        messages=[{"role": "user", "content": "my secret plan"}],
        client_ip="203.0.113.9",
        reply_channel="inbox.7f3a",
    )
    _workers_dispatch(job)
    with app.pool.acquire(block=True) as connection:
        message = connection.default_channel.basic_get(
            inference_queue(model_name=unserved_model), no_ack=True
        )
    assert message is not None
    assert message.headers["argsrepr"] == job_description(job)
    assert message.headers["kwargsrepr"] == "{}"
    shown = json.dumps(message.headers)
    assert job.generation_id in shown
    for private in ("secret plan", "203.0.113.9", "inbox.7f3a"):
        assert private not in shown
    (payload,), _, _ = message.decode()
    assert GenerationJob.from_payload(payload) == job


def test_remote_models_are_called_from_the_web_process_unless_told_otherwise(settings: Any) -> None:
    from inference.dispatch import _on_workers

    settings.GATEHOUSE_INFERENCE_EXECUTOR = "celery"
    settings.GATEHOUSE_REMOTE_GENERATION = "web"
    assert _on_workers(False)  # local models: where the GPUs are
    assert not _on_workers(True)  # remote ones: I/O, no broker hop
    settings.GATEHOUSE_REMOTE_GENERATION = "worker"
    assert _on_workers(True)
    settings.GATEHOUSE_INFERENCE_EXECUTOR = "inprocess"
    assert not _on_workers(False)
    assert not _on_workers(True)


@pytest.mark.skipif(not PRODUCTION, reason="the broker exists only with Celery (production profile)")
def test_the_warm_up_reaches_the_broker_and_sends_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    from kombu import Producer

    from inference import dispatch

    depths: list[str] = []
    published: list[object] = []
    real_depth = dispatch.inference_queue_depth

    def depth(*, model_name: str, remote: bool = False) -> int:
        depths.append(model_name)
        return real_depth(model_name=model_name, remote=remote)

    monkeypatch.setattr(dispatch, "inference_queue_depth", depth)
    monkeypatch.setattr(Producer, "publish", lambda *args, **kwargs: published.append(args))

    dispatch.workers_dispatch_warm()

    assert len(depths) == 1  # the broker connection the first chat will use is open
    assert published == []


def test_a_broker_the_warm_up_cannot_reach_is_logged_not_raised(
    settings: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from inference import dispatch

    settings.GATEHOUSE_INFERENCE_EXECUTOR = "celery"

    def unreachable(**_: object) -> int:
        raise ConnectionRefusedError("Connection refused")

    monkeypatch.setattr(dispatch, "inference_queue_depth", unreachable)
    with caplog.at_level("WARNING", logger="inference.dispatch"):
        dispatch.workers_dispatch_warm()

    assert "the broker could not be reached (Connection refused)" in caplog.text


def test_without_celery_workers_the_warm_up_touches_no_broker(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from inference import dispatch

    settings.GATEHOUSE_INFERENCE_EXECUTOR = "inprocess"
    depths: list[object] = []
    monkeypatch.setattr(dispatch, "inference_queue_depth", lambda **kwargs: depths.append(kwargs))

    dispatch.workers_dispatch_warm()

    assert depths == []


# The event loop's push onto a Redis broker (inference.broker_push).


@pytest.mark.parametrize(
    ("url", "options", "pushed_directly"),
    [
        ("redis://127.0.0.1:6379/1", None, True),
        ("rediss://:secret@redis.example.internal:6380/1", None, True),
        ("amqp://guest:guest@127.0.0.1:5672//", None, False),
        ("memory://", None, False),
        ("redis://a:6379/1;redis://b:6379/1", None, False),  # fail-over: Celery walks the list
        ("redis://127.0.0.1:6379/1", {"global_keyprefix": "gh:"}, False),
    ],
)
def test_only_a_plain_redis_broker_is_pushed_to_directly(
    settings: Any, url: str, options: dict[str, str] | None, pushed_directly: bool
) -> None:
    from inference.broker_push import broker_push_available

    settings.CELERY_BROKER_URL = url
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = options
    assert broker_push_available() is pushed_directly


def _queued_messages(queue: str) -> list[Any]:
    """What waits on `queue`, read as a worker reads it (kombu's channel), oldest first."""
    from gatehouse.celery import app

    messages = []
    with app.pool.acquire(block=True) as connection:
        while (message := connection.default_channel.basic_get(queue, no_ack=True)) is not None:
            messages.append(message)
    return messages


@pytest.mark.skipif(not PRODUCTION, reason="the broker exists only with Celery (production profile)")
async def test_a_pushed_job_is_the_message_celerys_producer_would_have_sent(unserved_model: str) -> None:
    """A worker reads the same task, headers and properties from either; nothing of the caller
    shows in the headers."""
    from inference.broker_push import broker_push
    from inference.dispatch import _workers_dispatch, job_description
    from inference.tasks import inference_generate

    queue = inference_queue(model_name=unserved_model)
    job = dataclasses.replace(
        _job(unserved_model),
        messages=[{"role": "user", "content": "my secret plan"}],
        client_ip="203.0.113.9",
        reply_channel="inbox.7f3a",
    )
    _workers_dispatch(job)  # Celery's producer, for comparison
    pushed = await broker_push(
        job=job, queue=queue, task_name=inference_generate.name, max_waiting=10, describe=job_description(job)
    )
    assert pushed.queued
    assert pushed.waiting == 1

    by_celery, by_push = _queued_messages(queue)
    assert by_push.decode() == by_celery.decode()
    (payload,), _, _ = by_push.decode()
    assert GenerationJob.from_payload(payload) == job
    assert by_push.content_type == by_celery.content_type == "application/json"
    volatile = {"id", "root_id", "expires"}  # each task's own id, and its deadline from now
    assert {k: v for k, v in by_push.headers.items() if k not in volatile} == {
        k: v for k, v in by_celery.headers.items() if k not in volatile
    }
    assert by_push.headers["root_id"] == by_push.headers["id"] != by_celery.headers["id"]
    assert by_push.headers["expires"] is not None
    for name in ("delivery_mode", "priority", "body_encoding", "delivery_info"):
        assert by_push.properties[name] == by_celery.properties[name], name
    assert by_push.properties["correlation_id"] == by_push.headers["id"]
    shown = json.dumps(by_push.headers)
    assert job.generation_id in shown
    for private in ("secret plan", "203.0.113.9", "inbox.7f3a"):
        assert private not in shown


@pytest.mark.skipif(not PRODUCTION, reason="the broker exists only with Celery (production profile)")
async def test_a_full_queue_refuses_the_push_and_queues_nothing(unserved_model: str, settings: Any) -> None:
    from inference.dispatch import InferenceBusy, generation_dispatch

    settings.GATEHOUSE_INFERENCE_EXECUTOR = "celery"
    settings.GATEHOUSE_INFERENCE_MAX_QUEUE = 2
    await generation_dispatch(job=_job(unserved_model))
    await generation_dispatch(job=_job(unserved_model))
    refused = _job(unserved_model)
    with pytest.raises(InferenceBusy, match=f"2 generations are already waiting for {unserved_model}"):
        await generation_dispatch(job=refused)

    queued = [
        message.decode()[0][0]["generation_id"]
        for message in _queued_messages(inference_queue(model_name=unserved_model))
    ]
    assert len(queued) == 2
    assert refused.generation_id not in queued


@pytest.mark.skipif(not PRODUCTION, reason="the broker exists only with Celery (production profile)")
async def test_a_dispatch_is_one_round_trip_from_the_event_loop(
    unserved_model: str, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The depth's check and the push together, without Celery's producer and its thread."""
    from redis.asyncio.connection import AbstractConnection

    from inference import dispatch

    settings.GATEHOUSE_INFERENCE_EXECUTOR = "celery"
    await dispatch.generation_dispatch(job=_job(unserved_model))  # the connection is open, the script known

    def not_celerys(job: GenerationJob) -> None:
        raise AssertionError("went through Celery's producer")

    monkeypatch.setattr(dispatch, "_workers_dispatch", not_celerys)
    writes: list[object] = []
    send = AbstractConnection.send_packed_command

    async def counted(self: AbstractConnection, command: object, check_health: bool = True) -> None:
        writes.append(command)
        await send(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)
    await dispatch.generation_dispatch(job=_job(unserved_model))

    assert len(writes) == 1
    assert len(_queued_messages(inference_queue(model_name=unserved_model))) == 2


@pytest.mark.skipif(not PRODUCTION, reason="the broker exists only with Celery (production profile)")
async def test_a_pushed_job_carries_the_request_id_of_the_request_that_queued_it(
    unserved_model: str, settings: Any
) -> None:
    from audit.context import RequestContext, request_context_bound
    from gatehouse.celery import REQUEST_ID_HEADER
    from inference.dispatch import generation_dispatch

    settings.GATEHOUSE_INFERENCE_EXECUTOR = "celery"
    with request_context_bound(RequestContext(request_id="req-7f3a")):
        await generation_dispatch(job=_job(unserved_model))

    (message,) = _queued_messages(inference_queue(model_name=unserved_model))
    assert message.headers[REQUEST_ID_HEADER] == "req-7f3a"

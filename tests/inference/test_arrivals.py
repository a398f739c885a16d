"""Chats for one model that arrive together start together: each job says how many others its
web process was still admitting (`inference.chat.arrivals`), and an idle continuous batch waits
for them (bounded) so that they share one prefill."""

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from channels.db import database_sync_to_async

from accounts.models import User
from inference import consumers
from inference.chat import arrivals
from inference.chat.arrivals import ARRIVAL_STALE_SECONDS, ChatArrival, chat_arrival_begin, chat_arrival_end
from inference.engines import continuous
from inference.engines.base import ChatMessage, GenerationParams, GenerationResult
from inference.engines.local import LocalTransformersEngine
from inference.generation import GenerationJob
from inference.models import ModelVersion
from tests.inference.engines import demo_engine
from tests.inference.fast_path import api_key_mint, v1_post
from tests.inference.websocket import access_token, chat_frame, communicator_for, frames_until_end


@pytest.fixture
def arriving(monkeypatch: pytest.MonkeyPatch) -> set[ChatArrival]:
    """This process's arrivals, empty for the test."""
    fresh: set[ChatArrival] = set()
    monkeypatch.setattr(arrivals, "_arriving", fresh)
    return fresh


# --- counting ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("arriving")
def test_a_chat_counts_the_others_for_its_model_still_arriving_when_it_ends() -> None:
    first, second = chat_arrival_begin(model_name="m"), chat_arrival_begin(model_name="m")
    chat_arrival_begin(model_name="other")
    assert chat_arrival_end(first) == 1
    assert chat_arrival_end(first) == 1  # ending again says the same, and counts nothing twice
    assert chat_arrival_end(second) == 0
    assert chat_arrival_end(None) == 0


def test_an_arrival_left_behind_stops_counting(arriving: set[ChatArrival]) -> None:
    forgotten = chat_arrival_begin(model_name="m")
    forgotten.started_at -= ARRIVAL_STALE_SECONDS + 1
    assert chat_arrival_end(chat_arrival_begin(model_name="m")) == 0
    assert arriving == set()


def test_a_job_says_its_companions_to_a_worker_only_where_it_has_some() -> None:
    job = GenerationJob(
        generation_id="g",
        client_id="c",
        reply_channel="r",
        version_id=1,
        model_name="m",
        messages=[],
        user_id=1,
    )
    assert "arriving_with" not in job.to_payload()  # the previous release's workers run it as before
    with_two = GenerationJob.from_payload({**job.to_payload(), "arriving_with": 2})
    assert with_two.to_payload()["arriving_with"] == 2


# --- the doors --------------------------------------------------------------------------------


def _companions_told(monkeypatch: pytest.MonkeyPatch, door: Any) -> list[int]:
    """What each job dispatched through `door` (the module whose `generation_dispatch` it calls)
    tells the model of its companions, in order; the jobs still go out."""
    told: list[int] = []
    dispatch = door.generation_dispatch

    async def noted(*, job: GenerationJob) -> None:
        told.append(job.arriving_with)
        await dispatch(job=job)

    monkeypatch.setattr(door, "generation_dispatch", noted)
    return told


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("inference_backend")
async def test_the_choices_of_one_request_tell_the_model_they_come_together(
    bob: User,
    demo_version: ModelVersion,
    arriving: set[ChatArrival],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from inference import generation_session

    told = _companions_told(monkeypatch, generation_session)
    key = await database_sync_to_async(api_key_mint)(bob)
    body = {"model": "demo-tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "n": 3}
    answer = await v1_post(body, key=key)
    assert answer.status_code == 200, answer.text
    # The first served knows two more are coming, the last none.
    assert sorted(told) == [0, 1, 2]
    assert arriving == set()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("inference_backend")
async def test_a_websocket_chat_tells_the_model_of_another_still_being_admitted(
    bob: User,
    demo_version: ModelVersion,
    arriving: set[ChatArrival],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    told = _companions_told(monkeypatch, consumers)
    elsewhere = chat_arrival_begin(model_name="demo-tiny")  # another chat, mid-admission
    communicator = communicator_for(token=await access_token(bob))
    assert (await communicator.connect())[0]
    await communicator.send_json_to(chat_frame("c1", max_tokens=3))
    frames = await frames_until_end(communicator, "c1")
    await communicator.disconnect()
    assert frames[-1]["type"] == "done"
    assert told == [1]
    assert arriving == {elsewhere}  # its own arrival ended with its dispatch


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("inference_backend")
async def test_a_refused_chat_no_longer_counts_as_arriving(bob: User, arriving: set[ChatArrival]) -> None:
    key = await database_sync_to_async(api_key_mint)(bob)
    body = {"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    answer = await v1_post(body, key=key)
    assert answer.status_code == 404, answer.text
    assert arriving == set()


# --- the model --------------------------------------------------------------------------------


@pytest.fixture
def continuous_engine(demo_directory: Path) -> Iterator[LocalTransformersEngine]:
    with demo_engine(demo_directory, batching="continuous") as engine:
        yield engine


def _staggered(engine: LocalTransformersEngine, companions: list[int], *, apart: float) -> list[Any]:
    """One greedy chat per entry of `companions` (what each says is coming with it), each
    started `apart` seconds after the one before; their results."""
    results: list[Any] = [None] * len(companions)

    def call(index: int) -> Callable[[], None]:
        def run() -> None:
            results[index] = engine.generate_stream(
                messages=[ChatMessage(role="user", content=f"hello {index}")],
                params=GenerationParams(max_tokens=4, temperature=0.0),
                on_token=lambda *_: None,
                should_stop=lambda: False,
                arriving_with=companions[index],
            )

        return run

    threads = []
    for index in range(len(companions)):
        thread = threading.Thread(target=call(index))
        thread.start()
        threads.append(thread)
        time.sleep(apart)
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_chats_that_say_they_come_together_are_prefilled_together(
    continuous_engine: LocalTransformersEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(continuous, "COMPANIONS_WAIT_SECONDS", 5.0)  # far beyond the stagger
    results = _staggered(continuous_engine, [2, 1, 0], apart=0.05)
    assert all(isinstance(result, GenerationResult) for result in results)
    assert continuous_engine.scheduler.batch_sizes == {3: 1}


def test_chats_that_come_alone_start_at_once(continuous_engine: LocalTransformersEngine) -> None:
    _staggered(continuous_engine, [0, 0, 0], apart=0.05)
    # The first is prefilled before the second arrives.
    assert continuous_engine.scheduler.batch_sizes[1] >= 1
    assert 3 not in continuous_engine.scheduler.batch_sizes


def test_companions_that_never_come_hold_a_chat_back_only_for_the_bound(
    continuous_engine: LocalTransformersEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(continuous, "COMPANIONS_WAIT_SECONDS", 0.05)
    [result] = _staggered(continuous_engine, [3], apart=0)
    assert isinstance(result, GenerationResult)
    assert result.completion_tokens == 4
    assert continuous_engine.scheduler.batch_sizes == {1: 1}

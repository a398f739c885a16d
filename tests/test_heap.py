"""The frozen heap: what start-up built is left out of garbage collection, what comes later is not."""

import asyncio
import gc
import threading
import weakref
from collections.abc import Iterator

import pytest

from gatehouse.heap import heap_freeze


class _Cycle:
    """An object that refers to itself: only the cycle collector frees it."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def frozen_heap() -> Iterator[None]:
    """The test process's heap as a serving process has it; given back to collections after."""
    yield
    gc.unfreeze()
    gc.collect()


@pytest.mark.usefixtures("frozen_heap")
def test_what_exists_when_the_heap_is_frozen_is_left_out_of_collections() -> None:
    before = _Cycle()
    alive = weakref.ref(before)
    assert heap_freeze(reason="test", collect=True) >= 1
    del before
    gc.collect()
    assert alive() is not None  # frozen: collections skip it

    gc.unfreeze()
    gc.collect()
    assert alive() is None


@pytest.mark.usefixtures("frozen_heap")
def test_what_comes_after_the_freeze_is_collected_as_usual() -> None:
    heap_freeze(reason="test")
    after = _Cycle()
    alive = weakref.ref(after)
    del after
    gc.collect()
    assert alive() is None


async def _web_process_started() -> list[dict[str, str]]:
    """Run the ASGI lifespan through its start-up; what it sent back."""
    from gatehouse.lifespan import lifespan

    messages = iter([{"type": "lifespan.startup"}])
    sent: list[dict[str, str]] = []

    async def receive() -> dict[str, str]:
        try:
            return next(messages)
        except StopIteration:
            raise asyncio.CancelledError from None

    async def send(message: dict[str, str]) -> None:
        sent.append(message)

    with pytest.raises(asyncio.CancelledError):
        await lifespan({"type": "lifespan"}, receive, send)
    return sent


@pytest.mark.usefixtures("frozen_heap")
async def test_the_web_process_freezes_its_heap_once_started() -> None:
    gc.unfreeze()
    assert await _web_process_started() == [{"type": "lifespan.startup.complete"}]
    assert gc.get_freeze_count() > 0


@pytest.mark.usefixtures("frozen_heap")
async def test_the_web_process_warms_its_dispatch_at_start_in_the_background(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Celery client's one-time costs are paid at start-up, off the lifespan's own path (a
    broker that is down must not hold the start)."""
    from gatehouse import lifespan as lifespan_module

    warmed = threading.Event()
    started_by: list[str] = []

    def warm() -> None:
        started_by.append(threading.current_thread().name)
        warmed.set()

    monkeypatch.setattr(lifespan_module, "workers_dispatch_warm", warm)
    assert await _web_process_started() == [{"type": "lifespan.startup.complete"}]
    assert await asyncio.to_thread(warmed.wait, 10)
    assert started_by == ["dispatch-warm-up"]


@pytest.mark.usefixtures("frozen_heap")
def test_a_worker_freezes_its_heap_once_ready() -> None:
    from celery.signals import worker_ready

    gc.unfreeze()
    worker_ready.send(sender=None)
    assert gc.get_freeze_count() > 0


def test_a_worker_freezes_its_heap_before_it_warms_its_models() -> None:
    """A warmed model frozen with start-up's heap would never be freed once evicted."""
    from celery.signals import worker_ready

    import inference.tasks  # noqa: F401 - connects the warm-up

    def name(receiver: object) -> str:
        target = receiver() if isinstance(receiver, weakref.ReferenceType) else receiver
        return str(getattr(target, "__name__", ""))

    names = [name(receiver) for _, receiver in worker_ready.receivers]
    assert names.index("_freeze_the_started_heap") < names.index("_warm_up_at_start")

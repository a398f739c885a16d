"""The process's cancel watcher: one cache read per poll for every generation it runs."""

import threading
import time
import uuid
from typing import Any

import pytest
from django.core.cache import cache as real_cache
from redis.exceptions import ConnectionError as RedisConnectionError

from inference import cancellation
from inference.cancellation import generation_cancel_request, generation_cancel_watch

WAIT_SECONDS = 10.0


class _CountingCache:
    """The real cache, with every read of the watcher written down (and a first failure, if asked)."""

    def __init__(self, *, failures: int = 0) -> None:
        self.reads: list[list[str]] = []
        self._failures = failures
        self._lock = threading.Lock()

    def get_many(self, keys: list[str]) -> dict[str, Any]:
        with self._lock:
            if self._failures:
                self._failures -= 1
                raise RedisConnectionError("Redis went away")
            self.reads.append(sorted(keys))
        return real_cache.get_many(keys)

    def get(self, *args: object, **kwargs: object) -> Any:
        raise AssertionError("a watched generation's flag was read on its own")

    def set(self, key: str, value: object, *, timeout: int) -> None:
        real_cache.set(key, value, timeout=timeout)

    def read_count(self) -> int:
        with self._lock:
            return len(self.reads)

    def reads_after(self, count: int) -> list[list[str]]:
        with self._lock:
            return self.reads[count:]


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> _CountingCache:
    counted = _CountingCache()
    monkeypatch.setattr(cancellation, "cache", counted)
    return counted


def _ids(count: int) -> list[str]:
    return [f"watched-{uuid.uuid4().hex}" for _ in range(count)]


def _reads_until(counting: _CountingCache, *, more_than: int) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while counting.read_count() <= more_than:
        assert time.monotonic() < deadline, "the watcher stopped reading"
        time.sleep(0.005)


def test_a_raised_flag_sets_only_its_own_generations_event() -> None:
    cancelled_id, running_id = _ids(2)
    with (
        generation_cancel_watch(generation_id=cancelled_id) as cancelled,
        generation_cancel_watch(generation_id=running_id) as running,
    ):
        assert not cancelled.is_set()
        generation_cancel_request(generation_id=cancelled_id)
        assert cancelled.wait(WAIT_SECONDS)
        assert not running.is_set()


def test_one_read_serves_every_watched_generation(counting: _CountingCache) -> None:
    ids = _ids(4)
    with (
        generation_cancel_watch(generation_id=ids[0]),
        generation_cancel_watch(generation_id=ids[1]),
        generation_cancel_watch(generation_id=ids[2]),
        generation_cancel_watch(generation_id=ids[3]),
    ):
        watched_from = counting.read_count()
        _reads_until(counting, more_than=watched_from + 3)
        # Each read after the first may still be the one that began before the last watch.
        later = counting.reads_after(watched_from + 1)
    keys = sorted(f"inference:cancel:{generation_id}" for generation_id in ids)
    assert later
    assert all(read == keys for read in later)


def test_a_generation_no_longer_watched_is_not_read(counting: _CountingCache) -> None:
    ended, running = _ids(2)
    with generation_cancel_watch(generation_id=running):
        with generation_cancel_watch(generation_id=ended):
            _reads_until(counting, more_than=0)
        ended_at = counting.read_count()
        _reads_until(counting, more_than=ended_at + 2)
        assert all(read == [f"inference:cancel:{running}"] for read in counting.reads_after(ended_at + 1))
    idle_from = counting.read_count()
    time.sleep(cancellation.WATCH_POLL_SECONDS * 10)
    # Nothing watched: at most the read already under way when the last watch ended.
    assert counting.read_count() <= idle_from + 1


def test_an_unreadable_cache_is_retried_and_a_later_flag_still_lands(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    failing = _CountingCache(failures=1)
    monkeypatch.setattr(cancellation, "cache", failing)
    (generation_id,) = _ids(1)
    with generation_cancel_watch(generation_id=generation_id) as cancelled:
        _reads_until(failing, more_than=0)  # the failed read was retried
        generation_cancel_request(generation_id=generation_id)
        assert cancelled.wait(WAIT_SECONDS)
    assert "could not read cancel flags (Redis went away)" in caplog.text

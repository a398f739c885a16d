"""Bookkeeping deferred while its store is away is done once it is back, or given up on."""

import threading
import time

import pytest

from gatehouse import deferred


class StoreAway(Exception):
    pass


def _wait_until(condition: object, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.02)


def test_a_step_that_works_at_once_is_not_deferred() -> None:
    done: list[int] = []
    assert deferred.deferred_until_done(
        what="test: at once", attempt=lambda: done.append(1), retry_on=(StoreAway,), give_up_after=5
    )
    assert done == [1]


def test_a_step_whose_store_is_away_is_retried_until_it_is_back() -> None:
    back = threading.Event()
    done: list[str] = []

    def attempt() -> None:
        if not back.is_set():
            raise StoreAway("connection refused")
        done.append("settled")

    assert not deferred.deferred_until_done(
        what="test: retried", attempt=attempt, retry_on=(StoreAway,), give_up_after=30
    )
    assert done == []
    back.set()
    _wait_until(lambda: done == ["settled"])
    _wait_until(lambda: deferred.deferred_pending() == 0)


def test_a_step_is_given_up_after_its_time_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    tries: list[float] = []

    def attempt() -> None:
        tries.append(time.monotonic())
        raise StoreAway("still away")

    deferred.deferred_until_done(
        what="test: hopeless", attempt=attempt, retry_on=(StoreAway,), give_up_after=0.5
    )
    _wait_until(lambda: deferred.deferred_pending() == 0)
    assert len(tries) >= 2  # tried at once, then again before giving up
    assert any("test: hopeless: given up" in record.getMessage() for record in caplog.records)


def test_other_errors_are_not_deferred() -> None:
    def attempt() -> None:
        raise ValueError("a bug, not an outage")

    with pytest.raises(ValueError, match="a bug"):
        deferred.deferred_until_done(
            what="test: bug", attempt=attempt, retry_on=(StoreAway,), give_up_after=5
        )
    assert deferred.deferred_pending() == 0

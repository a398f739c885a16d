"""The request path's in-process caches (gatehouse.local_cache) and what drops them."""

import time

import pytest
import redis
from django.conf import settings
from django.test import override_settings

from gatehouse.local_cache import (
    CHANNEL,
    LocalCache,
    NotCached,
    local_caches_invalidate,
    local_caches_only,
    local_caches_trusted,
)
from tests.profile import PRODUCTION

production_only = pytest.mark.skipif(
    not PRODUCTION, reason="values are kept only where Redis carries the announcements (production profile)"
)


class Loads:
    """A loader that counts its calls and returns the current `value`."""

    def __init__(self, value: str) -> None:
        self.value = value
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        return self.value


def _trusted(cache: LocalCache[str, str]) -> None:
    """Wait until this process listens for announcements (the first use starts the listener)."""
    deadline = time.monotonic() + 10
    while not local_caches_trusted():
        assert time.monotonic() < deadline, "the cache never started listening for announcements"
        time.sleep(0.02)
    cache.clear()


def test_without_redis_every_read_goes_to_the_source() -> None:
    cache: LocalCache[str, str] = LocalCache("test: no redis")
    load = Loads("a")
    with override_settings(REDIS_URL=None):
        assert cache.fetch("k", load) == "a"
        assert cache.fetch("k", load) == "a"
    assert load.calls == 2


@production_only
@pytest.mark.django_db(transaction=True)
def test_a_value_is_kept_until_any_change_is_announced() -> None:
    cache: LocalCache[str, str] = LocalCache("test: kept")
    _trusted(cache)
    load = Loads("old")
    assert cache.fetch("k", load) == "old"
    load.value = "new"
    assert cache.fetch("k", load) == "old"  # served from memory
    local_caches_invalidate(reason="test")  # outside a transaction: announced at once
    assert cache.fetch("k", load) == "new"
    assert load.calls == 2


@production_only
def test_an_announcement_from_another_process_drops_the_values() -> None:
    cache: LocalCache[str, str] = LocalCache("test: remote")
    _trusted(cache)
    load = Loads("old")
    cache.fetch("k", load)
    load.value = "new"
    redis.Redis.from_url(settings.REDIS_URL).publish(CHANNEL, "another process changed something")
    deadline = time.monotonic() + 10
    while cache.fetch("k", load) != "new":
        assert time.monotonic() < deadline, "the announcement never reached this process"
        time.sleep(0.01)


@production_only
@pytest.mark.django_db(transaction=True)
def test_a_value_loaded_while_a_change_is_announced_is_not_kept() -> None:
    cache: LocalCache[str, str] = LocalCache("test: race")
    _trusted(cache)

    def load_during_change() -> str:
        local_caches_invalidate(reason="a change lands while the old value is read")
        return "stale"

    assert cache.fetch("k", load_during_change) == "stale"
    assert cache.fetch("k", Loads("fresh")) == "fresh"


@production_only
def test_made_up_keys_are_not_kept_when_the_rule_says_so() -> None:
    cache: LocalCache[str, str | None] = LocalCache("test: keep")
    _trusted(LocalCache("test: keep, listening"))
    calls = []

    def missing() -> None:
        calls.append(1)

    cache.fetch("nobody", missing, keep=lambda value: value is not None)
    cache.fetch("nobody", missing, keep=lambda value: value is not None)
    assert len(calls) == 2


def test_inside_cache_only_a_miss_raises_instead_of_loading() -> None:
    cache: LocalCache[str, str] = LocalCache("test: only")
    load = Loads("a")
    with local_caches_only(), pytest.raises(NotCached):
        cache.fetch("k", load)
    assert load.calls == 0

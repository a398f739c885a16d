"""How busy each deployment is: its calls in flight and the tokens it served this minute,
shared by every process (Redis; the embedded default keeps them in this process).

A call takes a lease on the deployment it is about to call and gives it back when it ends,
with the tokens it used. Taking is one atomic step over the candidates (one Lua script on
Redis): the first with room (by weight), or the one with the fewest calls in flight
(least-busy routing), where "room" means fewer calls in flight than its `max_concurrency`
and fewer tokens this minute than its `tokens_per_minute` once this call's prompt is added.
A lease carries an expiry, so a process that dies mid-call does not hold its deployment
forever. A deployment with neither limit, routed by weight, takes no lease at all: the common
case pays no round trip.

Failure mode: Redis out of reach lets the call go to the first candidate without a lease
(limits are a courtesy to the upstream; an outage of ours must not become one of theirs),
and is logged.
"""

import asyncio
import hashlib
import logging
import math
import threading
import time
import uuid
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings

from gatehouse.redis_clients import redis_short, redis_short_async

logger = logging.getLogger(__name__)

_PREFIX = "gatehouse:deployment:"
# A lease outlives its call's own time limit by this much before another may take its room.
_LEASE_GRACE_SECONDS = 30.0
# A lease's life where the model sets no time limit on a call.
_UNBOUNDED_CALL_SECONDS = 600.0

# KEYS: per candidate, its in-flight set then its tokens-this-minute counter.
# ARGV: now (ms), lease expiry (ms), lease id, least-busy (1/0), this call's prompt tokens,
# then per candidate its max concurrency and tokens per minute (0: no limit).
# Returns the chosen candidate's 1-based position, or 0 when none has room.
_TAKE = """
local now, expiry, lease = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local least, tokens = ARGV[4] == '1', tonumber(ARGV[5])
local chosen, fewest = 0, nil
for i = 1, #KEYS / 2 do
  local flight, minute = KEYS[2 * i - 1], KEYS[2 * i]
  redis.call('ZREMRANGEBYSCORE', flight, '-inf', now)
  local count = redis.call('ZCARD', flight)
  local cap, tpm = tonumber(ARGV[4 + 2 * i]), tonumber(ARGV[5 + 2 * i])
  local room = cap == 0 or count < cap
  if room and tpm > 0 then
    room = tonumber(redis.call('GET', minute) or '0') + tokens <= tpm
  end
  if room then
    if not least then chosen = i break end
    if fewest == nil or count < fewest then chosen, fewest = i, count end
  end
end
if chosen > 0 then
  local flight = KEYS[2 * chosen - 1]
  redis.call('ZADD', flight, expiry, lease)
  redis.call('PEXPIREAT', flight, expiry)
end
return chosen
"""

# KEYS: the in-flight set, the tokens counter of the minute it ends in. ARGV: lease id, tokens.
_GIVE_BACK = """
redis.call('ZREM', KEYS[1], ARGV[1])
local tokens = tonumber(ARGV[2])
if tokens > 0 then
  redis.call('INCRBY', KEYS[2], tokens)
  redis.call('EXPIRE', KEYS[2], 120)
end
return 1
"""

# KEYS: in-flight sets. ARGV: now (ms). The live leases of each.
_COUNT = """
local counts = {}
for i = 1, #KEYS do counts[i] = redis.call('ZCOUNT', KEYS[i], ARGV[1], '+inf') end
return counts
"""


@dataclass(frozen=True)
class DeploymentLimits:
    """One deployment's identity in the shared counts, and what it may take (None: no limit)."""

    key: str
    max_concurrency: int | None = None
    tokens_per_minute: int | None = None

    @property
    def limited(self) -> bool:
        return self.max_concurrency is not None or self.tokens_per_minute is not None


@dataclass(frozen=True)
class Lease:
    """Room taken on one deployment, to give back when its call ends (`key` None: none taken)."""

    key: str | None
    lease_id: str = ""


NO_LEASE = Lease(key=None)


def prompt_tokens_estimate(*, prompt_bytes: int) -> int:
    """A prompt's tokens as a deployment's minute counts them before its call: about four bytes
    each (the call's own count replaces it once the call ends)."""
    return prompt_bytes // 4


def deployment_key(*, base_url: str, remote_model: str) -> str:
    """A deployment's name in the shared counts: its address and model (never its key)."""
    return hashlib.sha256(f"{base_url}\n{remote_model}".encode()).hexdigest()[:32]


def _minute(now: float) -> int:
    return int(now // 60)


class _LocalLoad:
    """The embedded default's counts: this process's calls only."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flight: dict[str, dict[str, float]] = {}
        self._tokens: dict[tuple[str, int], int] = {}

    def take(
        self, candidates: Sequence[DeploymentLimits], *, least_busy: bool, tokens: int, seconds: float
    ) -> tuple[int, Lease] | None:
        now = time.time()
        with self._lock:
            chosen: int | None = None
            fewest = math.inf
            for index, limits in enumerate(candidates):
                flight = self._live(limits.key, now)
                room = limits.max_concurrency is None or len(flight) < limits.max_concurrency
                if room and limits.tokens_per_minute is not None:
                    used = self._tokens.get((limits.key, _minute(now)), 0)
                    room = used + tokens <= limits.tokens_per_minute
                if room and not least_busy:
                    chosen = index
                    break
                if room and len(flight) < fewest:
                    chosen, fewest = index, len(flight)
            if chosen is None:
                return None
            lease = Lease(key=candidates[chosen].key, lease_id=uuid.uuid4().hex)
            self._flight.setdefault(candidates[chosen].key, {})[lease.lease_id] = now + seconds
            return chosen, lease

    def give_back(self, lease: Lease, *, tokens: int) -> None:
        assert lease.key is not None  # noqa: S101 - NO_LEASE never reaches a store
        minute = _minute(time.time())
        with self._lock:
            self._flight.get(lease.key, {}).pop(lease.lease_id, None)
            if tokens > 0:
                slot = (lease.key, minute)
                self._tokens[slot] = self._tokens.get(slot, 0) + tokens
                for stale in [slot for slot in self._tokens if slot[1] < minute - 1]:
                    del self._tokens[stale]

    def in_flight(self, keys: Sequence[str]) -> list[int]:
        now = time.time()
        with self._lock:
            return [len(self._live(key, now)) for key in keys]

    def _live(self, key: str, now: float) -> dict[str, float]:
        flight = self._flight.setdefault(key, {})
        for lease_id in [lease_id for lease_id, expiry in flight.items() if expiry <= now]:
            del flight[lease_id]
        return flight


def _take_arguments(
    candidates: Sequence[DeploymentLimits], *, least_busy: bool, tokens: int, seconds: float, lease_id: str
) -> tuple[list[str], list[Any]]:
    now = time.time()
    keys: list[str] = []
    arguments: list[Any] = [int(now * 1000), int((now + seconds) * 1000), lease_id, int(least_busy), tokens]
    for limits in candidates:
        keys += [f"{_PREFIX}flight:{limits.key}", f"{_PREFIX}tokens:{limits.key}:{_minute(now)}"]
        arguments += [limits.max_concurrency or 0, limits.tokens_per_minute or 0]
    return keys, arguments


def _give_back_arguments(lease: Lease, *, tokens: int) -> tuple[list[str], list[Any]]:
    minute = _minute(time.time())
    return [f"{_PREFIX}flight:{lease.key}", f"{_PREFIX}tokens:{lease.key}:{minute}"], [lease.lease_id, tokens]


class _Scripts:
    def __init__(self, client: Any) -> None:
        self.client = client
        self.take = client.register_script(_TAKE)
        self.give_back = client.register_script(_GIVE_BACK)
        self.count = client.register_script(_COUNT)


_local = _LocalLoad()
_sync_scripts: _Scripts | None = None
_sync_lock = threading.Lock()
_async_scripts: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Scripts]" = weakref.WeakKeyDictionary()


def _shared() -> bool:
    return bool(settings.REDIS_URL)


def _scripts() -> _Scripts:
    """The scripts on this process's short-call client (registered once)."""
    global _sync_scripts  # noqa: PLW0603 - one registration per process, at first use
    with _sync_lock:
        if _sync_scripts is None:
            _sync_scripts = _Scripts(redis_short())
        return _sync_scripts


def _scripts_async() -> _Scripts:
    """The scripts on the running event loop's short-call client (registered once per loop)."""
    loop = asyncio.get_running_loop()
    scripts = _async_scripts.get(loop)
    if scripts is None:
        scripts = _async_scripts[loop] = _Scripts(redis_short_async())
    return scripts


def _needs_lease(candidates: Sequence[DeploymentLimits], *, least_busy: bool) -> bool:
    """Whether choosing needs the counts: least-busy routing, or a first choice with limits."""
    return least_busy or candidates[0].limited


@dataclass(frozen=True)
class _SharedTake:
    """A take to run on Redis: the script's keys and arguments, and the lease it takes."""

    keys: list[str]
    arguments: list[Any]
    lease_id: str

    def chosen(self, answer: Any, candidates: Sequence[DeploymentLimits]) -> tuple[int, Lease] | None:
        position = int(answer)
        if position == 0:
            return None
        return position - 1, Lease(key=candidates[position - 1].key, lease_id=self.lease_id)


def _take_prepared(
    candidates: Sequence[DeploymentLimits], *, least_busy: bool, tokens: int, seconds: float | None
) -> _SharedTake | tuple[int, Lease] | None:
    """What a take comes to without Redis (no lease needed, or the embedded default's counts),
    or the script to run there."""
    if not _needs_lease(candidates, least_busy=least_busy):
        return 0, NO_LEASE
    seconds = (seconds or _UNBOUNDED_CALL_SECONDS) + _LEASE_GRACE_SECONDS
    if not _shared():
        return _local.take(candidates, least_busy=least_busy, tokens=tokens, seconds=seconds)
    lease_id = uuid.uuid4().hex
    keys, arguments = _take_arguments(
        candidates, least_busy=least_busy, tokens=tokens, seconds=seconds, lease_id=lease_id
    )
    return _SharedTake(keys=keys, arguments=arguments, lease_id=lease_id)


def _unshared(exc: redis.RedisError) -> tuple[int, Lease]:
    logger.warning("deployment limits not applied: the shared counts cannot be reached (%s)", exc)
    return 0, NO_LEASE


def deployment_take(
    *, candidates: Sequence[DeploymentLimits], least_busy: bool, tokens: int, seconds: float | None
) -> tuple[int, Lease] | None:
    """Choose among `candidates` (in the order to prefer them) and take room on it for a call
    of `tokens` prompt tokens lasting at most `seconds` (None: no limit): its index and lease,
    or None when every one is at a limit."""
    prepared = _take_prepared(candidates, least_busy=least_busy, tokens=tokens, seconds=seconds)
    if not isinstance(prepared, _SharedTake):
        return prepared
    try:
        answer = _scripts().take(keys=prepared.keys, args=prepared.arguments)
    except redis.RedisError as exc:
        return _unshared(exc)
    return prepared.chosen(answer, candidates)


async def deployment_take_async(
    *, candidates: Sequence[DeploymentLimits], least_busy: bool, tokens: int, seconds: float | None
) -> tuple[int, Lease] | None:
    """`deployment_take` on an event loop."""
    prepared = _take_prepared(candidates, least_busy=least_busy, tokens=tokens, seconds=seconds)
    if not isinstance(prepared, _SharedTake):
        return prepared
    try:
        answer = await _scripts_async().take(keys=prepared.keys, args=prepared.arguments)
    except redis.RedisError as exc:
        return _unshared(exc)
    return prepared.chosen(answer, candidates)


def _give_back_prepared(lease: Lease, *, tokens: int) -> tuple[list[str], list[Any]] | None:
    """The script's keys and arguments, or None where there is nothing to give back on Redis
    (no lease, or the embedded default's counts, given back here)."""
    if lease.key is None:
        return None
    if not _shared():
        _local.give_back(lease, tokens=tokens)
        return None
    return _give_back_arguments(lease, tokens=tokens)


def deployment_give_back(*, lease: Lease, tokens: int) -> None:
    """The call on `lease` ended having used `tokens`: its room goes back, its tokens count
    against its deployment's minute."""
    prepared = _give_back_prepared(lease, tokens=tokens)
    if prepared is None:
        return
    try:
        _scripts().give_back(keys=prepared[0], args=prepared[1])
    except redis.RedisError as exc:  # the lease expires on its own
        logger.warning("a deployment lease could not be given back (%s)", exc)


async def deployment_give_back_async(*, lease: Lease, tokens: int) -> None:
    """`deployment_give_back` on an event loop."""
    prepared = _give_back_prepared(lease, tokens=tokens)
    if prepared is None:
        return
    try:
        await _scripts_async().give_back(keys=prepared[0], args=prepared[1])
    except redis.RedisError as exc:  # the lease expires on its own
        logger.warning("a deployment lease could not be given back (%s)", exc)


def deployment_in_flight(*, keys: Sequence[str]) -> list[int] | None:
    """The calls in flight on each deployment (counted where a limit or least-busy routing
    needs them), for the console; None when the shared counts cannot be read."""
    if not _shared():
        return _local.in_flight(keys)
    try:
        counts = _scripts().count(
            keys=[f"{_PREFIX}flight:{key}" for key in keys], args=[int(time.time() * 1000)]
        )
    except redis.RedisError:
        return None
    return [int(count) for count in counts]

"""Exact-match answers: a model's response cache (opt-in, `Model.response_cache`).

A deterministic request (temperature 0, or a seed) asked again within the model's time is
answered from the first answer, without calling the model. The key is the scope (the caller's
teams, the caller alone where they have none, or everyone where the model shares its cache),
the version and the canonical request (messages, every generation setting, tools and
structured output): an answer is never given to another team unless the model says so, nor
across versions. Only whole answers are kept (ended by stop, length or a tool call), in Redis
with the model's time to live; the embedded default keeps them in this process.

Failure mode: Redis out of reach is a miss (and nothing is stored): the model answers, as it
would without a cache. A stored value that cannot be read is a miss too.
"""

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
import redis
from django.conf import settings

from gatehouse.redis_clients import redis_short_async
from inference.chat.admission import ChatAdmitted
from inference.engines.base import TokenLogprob

logger = logging.getLogger(__name__)

_PREFIX = "gatehouse:response-cache:"
# The embedded default's cache holds this many answers at most (the least recently used go).
_LOCAL_ENTRIES = 1000
# How a chat may end for its answer to be kept.
_KEPT_ENDINGS = frozenset({"stop", "length", "tool_calls"})


@dataclass
class CachedAnswer:
    """One answer as the client was given it, and what it cost."""

    texts: list[str] = field(default_factory=list)
    logprobs: list[TokenLogprob] | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def keepable(self) -> bool:
        return self.finish_reason in _KEPT_ENDINGS


def response_cache_key(admitted: ChatAdmitted) -> str | None:
    """Where `admitted`'s answer is kept, or None where its model keeps none for it."""
    plan = admitted.plan
    if plan.cache is None:
        return None
    features = admitted.features
    canonical = orjson.dumps(
        {
            "version": plan.version_id,
            "messages": admitted.messages,
            "params": asdict(plan.params),
            "features": None if features is None else [features.fields, features.messages],
        },
        option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS,
    )
    digest = hashlib.sha256(plan.cache.scope.encode() + b"\n" + canonical).hexdigest()
    return f"{_PREFIX}{digest}"


async def response_cache_get(*, key: str) -> CachedAnswer | None:
    """The answer kept at `key`, or None (a miss, Redis out of reach, a value unreadable)."""
    if not settings.REDIS_URL:
        raw = _local.get(key)
    else:
        try:
            raw = await redis_short_async().get(key)
        except redis.RedisError as exc:
            logger.warning("response cache unreadable, the model answers (%s)", exc)
            return None
    if raw is None:
        return None
    try:
        return CachedAnswer(**orjson.loads(raw))
    except (orjson.JSONDecodeError, TypeError):
        logger.warning("response cache: an unreadable entry was ignored")
        return None


async def response_cache_put(*, key: str, answer: CachedAnswer, seconds: int) -> None:
    """Keep `answer` at `key` for `seconds` (only a whole answer; a failure to keep is logged)."""
    if not answer.keepable:
        return
    raw = orjson.dumps(asdict(answer))
    if not settings.REDIS_URL:
        _local.put(key, raw, seconds=seconds)
        return
    try:
        await redis_short_async().set(key, raw, ex=seconds)
    except redis.RedisError as exc:
        logger.warning("response cache: an answer could not be kept (%s)", exc)


class _LocalEntries:
    """The embedded default's cache: this process's, bounded, each entry with its expiry."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] <= time.monotonic():
                self._entries.pop(key, None)
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def put(self, key: str, raw: bytes, *, seconds: int) -> None:
        with self._lock:
            self._entries[key] = (time.monotonic() + seconds, raw)
            self._entries.move_to_end(key)
            while len(self._entries) > _LOCAL_ENTRIES:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_local = _LocalEntries()


def response_cache_clear_local() -> None:
    """Forget this process's kept answers (the embedded default's; tests)."""
    _local.clear()

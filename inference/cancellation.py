"""Cancel flags for running generations, shared through the cache.

The cache is process-local on the embedded default (where generations run in-process) and
Redis in production (where they run on Celery workers), so a flag set by the web tier is
seen wherever the generation runs.
"""

import logging

from django.core.cache import cache
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

_TTL_SECONDS = 15 * 60


def _key(generation_id: str) -> str:
    return f"inference:cancel:{generation_id}"


def generation_cancel_request(*, generation_id: str) -> None:
    """Raise the flag; with the cache unreachable, only log it. A flag raised late would be
    no use, and the outage that stops the flag also breaks the generation's relay (the same
    Redis), which stops the generation."""
    try:
        cache.set(_key(generation_id), True, timeout=_TTL_SECONDS)
    except RedisError as error:
        logger.warning("generation %s: could not raise its cancel flag (%s)", generation_id, error)


def generation_cancel_requested(*, generation_id: str) -> bool:
    return bool(cache.get(_key(generation_id), False))

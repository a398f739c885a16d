"""Cancel flags for running generations, shared through the cache.

The cache is process-local on the embedded default (where generations run in-process) and
Redis in production (where they run on Celery workers), so a flag set by the web tier is
seen wherever the generation runs.
"""

from django.core.cache import cache

_TTL_SECONDS = 15 * 60


def _key(generation_id: str) -> str:
    return f"inference:cancel:{generation_id}"


def generation_cancel_request(*, generation_id: str) -> None:
    cache.set(_key(generation_id), True, timeout=_TTL_SECONDS)


def generation_cancel_requested(*, generation_id: str) -> bool:
    return bool(cache.get(_key(generation_id), False))

"""How many chats each user has running, across connections, doors and web replicas.

A counter per user in the cache (Redis in production, so every replica shares it). A slot
is taken when a chat is dispatched and given back when it ends. If a web process dies with
chats running, their slots expire with the counter's time-to-live instead of leaking forever.
A slot given back while Redis is away is given back once it returns (gatehouse.deferred).
"""

from django.conf import settings
from django.core.cache import cache
from redis.exceptions import RedisError

from accounts.services.chat_quotas import ChatSlot
from gatehouse.deferred import deferred_until_done

# Longer than any chat may run (a model's wall-clock limit is at most a few minutes).
_TTL_SECONDS = 15 * 60


def _key(user_id: int) -> str:
    return f"inference:chats:{user_id}"


def chat_slot_for(*, user_id: int, limit: int) -> ChatSlot:
    """The user's counter as the chat admission script takes it (the cache's own key for it)."""
    return ChatSlot(
        user_id=user_id, key=cache.make_and_validate_key(_key(user_id)), limit=limit, ttl_seconds=_TTL_SECONDS
    )


def chat_slot_acquire(*, user_id: int, limit: int) -> bool:
    """Take one of the user's `limit` slots; False (nothing taken) when all are in use."""
    key = _key(user_id)
    cache.add(key, 0, timeout=_TTL_SECONDS)
    try:
        taken = cache.incr(key)
    except ValueError:  # expired between add and incr: start again from zero
        cache.add(key, 0, timeout=_TTL_SECONDS)
        taken = cache.incr(key)
    if taken > limit:
        chat_slot_release(user_id=user_id)
        return False
    cache.touch(key, _TTL_SECONDS)
    return True


def chat_slot_release(*, user_id: int) -> None:
    deferred_until_done(
        what=f"chat slot of user {user_id}: give back",
        attempt=lambda: _slot_give_back(user_id),
        retry_on=(RedisError,),
        give_up_after=settings.GATEHOUSE_DEFERRED_GIVE_UP_SECONDS,
    )


def _slot_give_back(user_id: int) -> None:
    try:
        if cache.decr(_key(user_id)) < 0:  # never below zero, whatever the races
            cache.set(_key(user_id), 0, timeout=_TTL_SECONDS)
    except ValueError:  # expired: nothing to give back
        pass

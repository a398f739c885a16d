"""A chat's admission and end against its quotas and its chat slot, each in one step.

With Redis (every replica shares it) each is one script (`accounts.quotas.chat_scripts`):
one round trip to admit, one to end, the usage record filed by the second. Without Redis
(the embedded default) the same rules run step by step on the database ledger and the
process's cache.

Failure mode, as `quota_admit`'s: with the store unreachable, a chat whose caller has token
or stream limits is refused with 503 (fail closed); one held only to request-rate limits
runs where GATEHOUSE_RATE_LIMIT_FAIL_OPEN is on, without a chat slot (none can be counted).
An end that cannot reach the store is retried in the background (gatehouse.deferred).
"""

import json
import uuid
import weakref
from asyncio import AbstractEventLoop, get_running_loop
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from accounts.models import ApiKey, User
from accounts.quotas.charge import NOTHING, Charge
from accounts.quotas.chat_scripts import (
    ADMIT,
    FINISH,
    ChatAdmitCall,
    ChatAdmitResult,
    counter_keys,
    finish_args,
)
from accounts.quotas.ledger import CounterSpec, QuotaExceeded, Reservation
from accounts.quotas.plan import Limit, QuotaPlan, quota_plan_for
from accounts.quotas.redis_ledger import RedisQuotaLedger
from accounts.services import quotas as quota_services
from accounts.services.quotas import (
    LEASE_MARGIN_SECONDS,
    QuotaAdmission,
    QuotaRefused,
    SpendAsk,
    quota_admit,
    quota_refusal,
    quota_settle,
    quota_unavailable,
    reservation_payload,
    reset_text,
)
from accounts.services.usage import USAGE_BUFFER_KEY, usage_row_enqueue
from gatehouse.deferred import deferred_until_done
from gatehouse.metrics import QUOTA_REJECTIONS

_PREFIX = "gatehouse:quota"  # the Redis ledger's
_ASYNC_CONNECTIONS = 32
_ASYNC_POOL_WAIT_SECONDS = 5.0


@dataclass(frozen=True)
class ChatSlot:
    """The user's running-chats counter: its store key (raw, as Redis names it), the most
    chats at once, and how long the counter outlives a process that died holding it."""

    user_id: int
    key: str
    limit: int
    ttl_seconds: int


@dataclass
class ChatHold:
    """What an admitted chat holds until it ends: its quota reservations (`quota`, JSON-safe:
    a worker settles them) and its chat slot (None where none could be counted)."""

    quota: QuotaAdmission
    slot: dict[str, Any] | None


def _slot_refused(slot: ChatSlot) -> QuotaRefused:
    QUOTA_REJECTIONS.labels(code="rate_limited").inc()
    return QuotaRefused(
        code="rate_limited",
        message=f"You already have {slot.limit} chats running; wait for one to end.",
        retry_after=None,
    )


def _call(
    *, plan: QuotaPlan, slot: ChatSlot | None, token_estimate: int, spend: SpendAsk, lease_seconds: float
) -> ChatAdmitCall:
    return ChatAdmitCall(
        slot_key=slot.key if slot else "",
        slot_limit=slot.limit if slot else None,
        slot_ttl=slot.ttl_seconds if slot else 0,
        requests=tuple(limit.spec for limit in plan.requests),
        streams=tuple(limit.spec for limit in plan.streams),
        tokens=tuple(limit.spec for limit in plan.tokens),
        token_amount=token_estimate,
        spend=tuple(limit.spec for limit in plan.spend),
        spend_amount=spend.units,
        lease_id=uuid.uuid4().hex,
        now=plan.now,
        deadline=plan.now + lease_seconds + LEASE_MARGIN_SECONDS,
    )


def _admitted(
    plan: QuotaPlan, call: ChatAdmitCall, result: ChatAdmitResult, slot: ChatSlot | None, spend: SpendAsk
) -> ChatHold:
    """The hold an admission grants, or the refusal it reported."""
    counters = call.counters
    if result.status == "slot":
        assert slot is not None  # noqa: S101 - the script refuses a slot only when asked for one
        raise _slot_refused(slot)
    if result.status != "ok":
        spec = counters[result.counter]
        exceeded = QuotaExceeded(key=spec.key, limit=spec.limit, used=result.refused_used)
        if result.status == "requests":
            raise quota_refusal(plan, exceeded, code="rate_limited", limits=plan.requests)
        code = "rate_limited" if spec.key.startswith("streams:") else "quota_exceeded"
        raise quota_refusal(plan, exceeded, code=code, limits=(*plan.streams, *plan.tokens, *plan.spend))
    quota = QuotaAdmission(
        headers=_headers(plan, dict(zip((c.key for c in counters), result.used, strict=True))),
        prices=spend.prices.to_payload(),
    )
    if call.streams:
        quota.streams = reservation_payload(Reservation(counters=call.streams, amount=1, id=call.lease_id))
    if call.tokens:
        quota.tokens = reservation_payload(
            Reservation(counters=call.tokens, amount=call.token_amount, id=call.lease_id)
        )
    if call.spend:
        quota.spend = reservation_payload(
            Reservation(counters=call.spend, amount=call.spend_amount, id=call.lease_id)
        )
    return ChatHold(quota=quota, slot={"user_id": slot.user_id, "key": slot.key} if slot else None)


def _headers(plan: QuotaPlan, used: dict[str, int]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for kind, limits in (("requests", plan.requests), ("tokens", plan.tokens)):
        if not limits:
            continue
        limit, left = min(((item, item.spec.limit - used[item.spec.key]) for item in limits), key=_left)
        headers[f"x-ratelimit-limit-{kind}"] = str(limit.spec.limit)
        headers[f"x-ratelimit-remaining-{kind}"] = str(max(0, left))
        if limit.resets_at is not None:
            headers[f"x-ratelimit-reset-{kind}"] = reset_text(limit.resets_at - plan.now)
    return headers


def _left(pair: tuple[Limit, int]) -> int:
    return pair[1]


def _store_down(plan: QuotaPlan) -> ChatHold:
    """The store is unreachable: run without counting only where rate limits may fail open."""
    if plan.tokens or plan.streams or plan.spend or not settings.GATEHOUSE_RATE_LIMIT_FAIL_OPEN:
        raise quota_unavailable()
    return ChatHold(quota=QuotaAdmission(), slot=None)


def quota_chat_admit(
    *,
    user: User,
    api_key: ApiKey | None,
    token_estimate: int,
    lease_seconds: float,
    slot: ChatSlot,
    plan: QuotaPlan | None = None,
    spend: SpendAsk | None = None,
) -> ChatHold:
    """Take the chat slot and admit the chat against every quota and budget, or raise
    QuotaRefused. `plan` is the caller's (quota_plan_for, with the model asked for), made here
    without one; `spend` what the chat may cost at most.

    Nothing is held after a refusal (the request still counts against request-rate limits,
    unless it was refused for its chat slot).
    """
    plan = plan or quota_plan_for(user=user, api_key=api_key)
    spend = spend or SpendAsk()
    ledger = _redis_ledger()
    if ledger is not None:
        call = _call(
            plan=plan, slot=slot, token_estimate=token_estimate, spend=spend, lease_seconds=lease_seconds
        )
        try:
            reply = _sync_scripts(ledger).admit(keys=call.keys(_PREFIX), args=call.args())
        except RedisError:
            return _store_down(plan)
        return _admitted(plan, call, ChatAdmitResult.parse(reply), slot, spend)
    from inference.chat_slots import chat_slot_acquire, chat_slot_release

    if not chat_slot_acquire(user_id=slot.user_id, limit=slot.limit):
        raise _slot_refused(slot)
    try:
        quota = quota_admit(
            user=user,
            api_key=api_key,
            token_estimate=token_estimate,
            lease_seconds=lease_seconds,
            plan=plan,
            spend=spend,
        )
    except BaseException:
        chat_slot_release(user_id=slot.user_id)
        raise
    return ChatHold(quota=quota, slot={"user_id": slot.user_id, "key": slot.key})


async def quota_chat_admit_async(
    *,
    user: User,
    api_key: ApiKey | None,
    plan: QuotaPlan,
    token_estimate: int,
    lease_seconds: float,
    slot: ChatSlot,
    spend: SpendAsk | None = None,
) -> ChatHold:
    """`quota_chat_admit` on an event loop, with the caller's `plan` (quota_plan_for)."""
    spend = spend or SpendAsk()
    if _redis_ledger() is None:
        return await sync_to_async(quota_chat_admit)(
            user=user,
            api_key=api_key,
            token_estimate=token_estimate,
            lease_seconds=lease_seconds,
            slot=slot,
            plan=plan,
            spend=spend,
        )
    call = _call(
        plan=plan, slot=slot, token_estimate=token_estimate, spend=spend, lease_seconds=lease_seconds
    )
    keys = call.keys(_PREFIX)
    try:
        reply = await _async_scripts().admit(keys=keys, args=call.args())
    except RedisError:
        return _store_down(plan)
    return _admitted(plan, call, ChatAdmitResult.parse(reply), slot, spend)


def _finish_call(
    hold: ChatHold, *, charge: Charge, usage: dict[str, Any] | None
) -> tuple[list[str], list[object]]:
    streams = _counters(hold.quota.streams)
    tokens = _counters(hold.quota.tokens)
    spend = _counters(hold.quota.spend)
    lease_id = (hold.quota.tokens or hold.quota.streams or hold.quota.spend or {}).get("id", "")
    keys = [
        hold.slot["key"] if hold.slot else "",
        USAGE_BUFFER_KEY,
        *counter_keys(_PREFIX, [*streams, *tokens, *spend]),
    ]
    args = finish_args(
        lease_id=lease_id,
        release_slot=hold.slot is not None,
        streams=len(streams),
        tokens=len(tokens),
        tokens_used=charge.tokens,
        spend_used=hold.quota.charge_units(charge) if spend else 0,
        usage_row=json.dumps(usage) if usage is not None else "",
        ttls=[counter.ttl_seconds for counter in (*streams, *tokens, *spend)],
    )
    return keys, args


def _counters(payload: dict[str, Any] | None) -> list[CounterSpec]:
    if not payload:
        return []
    return [CounterSpec(key, limit, ttl) for key, limit, ttl in payload["counters"]]


def quota_chat_finish(*, hold: ChatHold, charge: Charge, usage: dict[str, Any] | None) -> None:
    """The chat ended having used `charge` (NOTHING: give everything back): charge its tokens
    and cost, free its stream leases and chat slot, and buffer its usage record
    (`usage_record_row`)."""
    ledger = _redis_ledger()
    if ledger is not None and _same_lease(hold):
        keys, args = _finish_call(hold, charge=charge, usage=usage)
        scripts = _sync_scripts(ledger)
        deferred_until_done(
            what=f"chat of user {hold.slot and hold.slot['user_id']}: settle {charge.tokens} tokens, free its slots",
            attempt=lambda: scripts.finish(keys=keys, args=args),
            retry_on=(RedisError,),
            give_up_after=settings.GATEHOUSE_DEFERRED_GIVE_UP_SECONDS,
        )
        return
    _finish_stepwise(hold, charge=charge, usage=usage)


async def quota_chat_finish_async(
    *, hold: ChatHold, charge: Charge = NOTHING, usage: dict[str, Any] | None = None
) -> None:
    """`quota_chat_finish` on an event loop: one round trip, or the background retry."""
    if _redis_ledger() is not None and _same_lease(hold):
        keys, args = _finish_call(hold, charge=charge, usage=usage)
        try:
            await _async_scripts().finish(keys=keys, args=args)
        except RedisError:
            await sync_to_async(quota_chat_finish)(hold=hold, charge=charge, usage=usage)
        return
    await sync_to_async(_finish_stepwise)(hold, charge=charge, usage=usage)


def _same_lease(hold: ChatHold) -> bool:
    """Whether one script can end it: its leases share one id (admitted by `ADMIT`)."""
    ids = {payload["id"] for payload in (hold.quota.tokens, hold.quota.streams, hold.quota.spend) if payload}
    return len(ids) <= 1


def _finish_stepwise(hold: ChatHold, *, charge: Charge, usage: dict[str, Any] | None) -> None:
    from inference.chat_slots import chat_slot_release

    quota_settle(admission=hold.quota, charge=charge)
    if hold.slot is not None:
        chat_slot_release(user_id=int(hold.slot["user_id"]))
    if usage is not None:
        usage_row_enqueue(row=usage)


@dataclass(frozen=True)
class _Scripts:
    """The two scripts registered on one client: EVALSHA, loaded again if Redis forgot them."""

    admit: Any
    finish: Any

    @classmethod
    def on(cls, client: Any) -> "_Scripts":
        return cls(admit=client.register_script(ADMIT), finish=client.register_script(FINISH))


_sync: "weakref.WeakKeyDictionary[RedisQuotaLedger, _Scripts]" = weakref.WeakKeyDictionary()
_async: "weakref.WeakKeyDictionary[AbstractEventLoop, _Scripts]" = weakref.WeakKeyDictionary()


def _redis_ledger() -> RedisQuotaLedger | None:
    """The quota ledger when it is Redis's (the scripts run beside its counters), else None."""
    ledger = quota_services.quota_ledger()
    return ledger if isinstance(ledger, RedisQuotaLedger) else None


def _sync_scripts(ledger: RedisQuotaLedger) -> _Scripts:
    """The scripts on the ledger's own client (one pool per process)."""
    scripts = _sync.get(ledger)
    if scripts is None:
        scripts = _sync[ledger] = _Scripts.on(ledger.client)
    return scripts


def _async_scripts() -> _Scripts:
    """One asyncio client per event loop (its connections belong to that loop)."""
    loop = get_running_loop()
    scripts = _async.get(loop)
    if scripts is None:
        import redis.asyncio

        # A burst waits for a pooled connection rather than being refused (redis-py's default
        # pool refuses past 100), and a script's round trip is short: few connections serve it.
        # A pooled connection that Redis dropped (a restart) is retried on a fresh one, at most
        # twice: the old server never ran the script. A reset mid-reply could count a request
        # twice (a doubled lease expires); a timeout is not retried, the script may be running.
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            settings.REDIS_URL,
            max_connections=_ASYNC_CONNECTIONS,
            timeout=_ASYNC_POOL_WAIT_SECONDS,
            socket_timeout=2,
            socket_connect_timeout=2,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
            retry_on_error=[RedisConnectionError],
        )
        client = redis.asyncio.Redis(connection_pool=pool)
        scripts = _async[loop] = _Scripts.on(client)
    return scripts

"""The quota ledger in Redis: each operation is one Lua script, atomic across every replica.

A counter is three keys: its total (`:used`), its open leases by deadline (`:leases`, a
sorted set) and their amounts (`:amounts`, a hash). Reserving first gives back the leases
that expired, then checks every counter, then moves them all; nothing runs in between.
"""

import time
from typing import Any

import redis

from accounts.quotas.ledger import CounterSpec, LedgerUnavailable, QuotaExceeded, Reservation
from accounts.quotas.lua import EXPIRE_LEASES

_RESERVE = (
    EXPIRE_LEASES
    + """
local now, amount, rid, deadline = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4]
local n = #KEYS / 3
for i = 1, n do
  local used_key, leases_key, amounts_key = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  expire_leases(used_key, leases_key, amounts_key, now)
  local used = tonumber(redis.call('GET', used_key) or '0')
  if used + tonumber(amount) > tonumber(ARGV[4 + 2 * i - 1]) then
    return {0, i, used}
  end
end
for i = 1, n do
  local used_key, leases_key, amounts_key = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  local ttl = tonumber(ARGV[4 + 2 * i])
  redis.call('INCRBY', used_key, amount)
  redis.call('ZADD', leases_key, deadline, rid)
  redis.call('HSET', amounts_key, rid, amount)
  for _, key in ipairs({used_key, leases_key, amounts_key}) do
    redis.call('EXPIRE', key, ttl)
  end
end
return {1, 0, 0}
"""
)

# ARGV: reservation id, amount to charge (0 to release), then each counter's ttl.
_END = """
local rid, charge = ARGV[1], ARGV[2]
for i = 1, #KEYS / 3 do
  local used_key, leases_key, amounts_key = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  local lent = redis.call('HGET', amounts_key, rid)
  if lent then
    -- Still leased: swap the lease for the charge. Otherwise it expired and was given
    -- back already, and what was used is still charged.
    redis.call('HDEL', amounts_key, rid)
    redis.call('ZREM', leases_key, rid)
  else
    lent = '0'
  end
  if tonumber(charge) ~= tonumber(lent) then
    redis.call('INCRBY', used_key, charge)
    redis.call('DECRBY', used_key, lent)
    if redis.call('TTL', used_key) < 0 then
      redis.call('EXPIRE', used_key, tonumber(ARGV[2 + i]))
    end
  end
end
return 1
"""


class RedisQuotaLedger:
    def __init__(self, *, client: redis.Redis, prefix: str = "gatehouse:quota") -> None:
        self._client = client
        self._prefix = prefix
        self._reserve = client.register_script(_RESERVE)
        self._end = client.register_script(_END)

    @property
    def client(self) -> redis.Redis:
        return self._client

    def _keys(self, counters: tuple[CounterSpec, ...] | list[CounterSpec]) -> list[str]:
        base = [f"{self._prefix}:{counter.key}" for counter in counters]
        return [f"{key}:{part}" for key in base for part in ("used", "leases", "amounts")]

    def _call(self, script: Any, keys: list[str], args: list[object]) -> Any:
        try:
            return script(keys=keys, args=args)
        except redis.RedisError as error:
            raise LedgerUnavailable(f"the quota store is unreachable: {error}") from error

    def reserve(self, *, counters: list[CounterSpec], amount: int, lease_seconds: float) -> Reservation:
        reservation = Reservation(counters=tuple(counters), amount=amount)
        now = time.time()
        args: list[object] = [now, amount, reservation.id, now + lease_seconds]
        for counter in counters:
            args += [counter.limit, counter.ttl_seconds]
        granted, index, used = self._call(self._reserve, self._keys(counters), args)
        if not granted:
            refused = counters[int(index) - 1]
            raise QuotaExceeded(key=refused.key, limit=refused.limit, used=int(used))
        return reservation

    def settle(self, *, reservation: Reservation, actual: int) -> None:
        ttls = [counter.ttl_seconds for counter in reservation.counters]
        self._call(self._end, self._keys(reservation.counters), [reservation.id, actual, *ttls])

    def release(self, *, reservation: Reservation) -> None:
        self.settle(reservation=reservation, actual=0)

    def used(self, *, key: str) -> int:
        try:
            value = self._client.get(f"{self._prefix}:{key}:used")
        except redis.RedisError as error:
            raise LedgerUnavailable(f"the quota store is unreachable: {error}") from error
        return int(value or 0)

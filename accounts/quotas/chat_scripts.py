"""A chat's whole admission, and its whole end, each as one Redis script.

Admission takes the user's chat slot, counts the request against every request-rate limit,
and leases the stream slots, the token estimate and the cost estimate (budgets, in ledger
units) of every other limit, all or nothing in
the order a person would expect: a request refused for its chat slot counts nowhere; one
refused by a stream or token limit still counts as a request (it was made) and gives its
chat slot back. The end swaps the token and cost leases for what was used, frees the stream leases
and the chat slot, and files the usage record in its buffer: one round trip each way.

The counters are `accounts.quotas.redis_ledger`'s (three keys each, the same layout, so the
two can be mixed freely), the chat slot is `inference.chat_slots`' counter, and the usage
buffer is `accounts.services.usage`'s list.
"""

from dataclasses import dataclass
from typing import Any

from accounts.quotas.ledger import CounterSpec
from accounts.quotas.lua import EXPIRE_LEASES

# KEYS: the chat slot counter, then 3 per counter (requests, streams, tokens, then spend).
# ARGV: now, lease deadline, lease id, slot limit (-1: no slot), slot ttl, #requests,
#       #streams, #tokens, token amount, #spend, spend amount, then limit and ttl per counter.
# Returns {status, counter index, used} on refusal (status 'slot', 'requests' or 'held'),
# else {'ok', 0, 0, used of each counter after admission...}.
ADMIT = (
    EXPIRE_LEASES
    + """
local now, deadline, rid = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local slot_limit, slot_ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
local nr, ns, nt, tokens = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]), ARGV[9]
local nm, spend = tonumber(ARGV[10]), ARGV[11]
local n = nr + ns + nt + nm
local function keys(i) return KEYS[3 * i - 1], KEYS[3 * i], KEYS[3 * i + 1] end
local function limit(i) return tonumber(ARGV[11 + 2 * i - 1]) end
local function ttl(i) return tonumber(ARGV[11 + 2 * i]) end
local function amount_of(i)
  if i <= nr + ns then return '1' elseif i <= nr + ns + nt then return tokens else return spend end
end
local function used(i) return tonumber(redis.call('GET', KEYS[3 * i - 1]) or '0') end
local function slot_back()
  if slot_limit >= 0 and redis.call('DECR', KEYS[1]) < 0 then redis.call('SET', KEYS[1], 0) end
end
if slot_limit >= 0 then
  local taken = redis.call('INCR', KEYS[1])
  redis.call('EXPIRE', KEYS[1], slot_ttl)
  if taken > slot_limit then
    slot_back()
    return {'slot', 0, taken - 1}
  end
end
for i = 1, nr do
  local used_key, leases_key, amounts_key = keys(i)
  expire_leases(used_key, leases_key, amounts_key, now)
  if used(i) + 1 > limit(i) then
    slot_back()
    return {'requests', i, used(i)}
  end
end
for i = 1, nr do
  redis.call('INCRBY', KEYS[3 * i - 1], 1)
  redis.call('EXPIRE', KEYS[3 * i - 1], ttl(i))
end
for i = nr + 1, n do
  local used_key, leases_key, amounts_key = keys(i)
  expire_leases(used_key, leases_key, amounts_key, now)
  if used(i) + tonumber(amount_of(i)) > limit(i) then
    slot_back()
    return {'held', i, used(i)}
  end
end
for i = nr + 1, n do
  local used_key, leases_key, amounts_key = keys(i)
  local amount = amount_of(i)
  redis.call('INCRBY', used_key, amount)
  redis.call('ZADD', leases_key, deadline, rid)
  redis.call('HSET', amounts_key, rid, amount)
  for _, key in ipairs({used_key, leases_key, amounts_key}) do redis.call('EXPIRE', key, ttl(i)) end
end
local out = {'ok', 0, 0}
for i = 1, n do out[#out + 1] = used(i) end
return out
"""
)

# KEYS: the chat slot counter, the usage buffer, then 3 per held counter (streams, tokens,
#       then spend).
# ARGV: lease id, release the slot (1/0), #streams, tokens used, usage row ('' for none),
#       #tokens, spend used (ledger units), then ttl per counter.
FINISH = """
local rid, release_slot, ns, charge, row = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
local nt, spent = tonumber(ARGV[6]), ARGV[7]
if release_slot == '1' and redis.call('DECR', KEYS[1]) < 0 then redis.call('SET', KEYS[1], 0) end
if row ~= '' then redis.call('RPUSH', KEYS[2], row) end
for i = 1, (#KEYS - 2) / 3 do
  local used_key, leases_key, amounts_key = KEYS[3 * i], KEYS[3 * i + 1], KEYS[3 * i + 2]
  local amount = spent
  if i <= ns then amount = '0' elseif i <= ns + nt then amount = charge end
  local lent = redis.call('HGET', amounts_key, rid)
  if lent then
    -- Still leased: swap the lease for the charge. Otherwise it expired and was given back
    -- already, and what was used is still charged.
    redis.call('HDEL', amounts_key, rid)
    redis.call('ZREM', leases_key, rid)
  else
    lent = '0'
  end
  if tonumber(amount) ~= tonumber(lent) then
    redis.call('INCRBY', used_key, amount)
    redis.call('DECRBY', used_key, lent)
    if redis.call('TTL', used_key) < 0 then redis.call('EXPIRE', used_key, tonumber(ARGV[7 + i])) end
  end
end
return 1
"""


@dataclass(frozen=True)
class ChatAdmitCall:
    """One admission's keys and arguments (the counters' keys are unprefixed here)."""

    slot_key: str
    slot_limit: int | None
    slot_ttl: int
    requests: tuple[CounterSpec, ...]
    streams: tuple[CounterSpec, ...]
    tokens: tuple[CounterSpec, ...]
    token_amount: int
    spend: tuple[CounterSpec, ...]
    spend_amount: int
    lease_id: str
    now: float
    deadline: float

    @property
    def counters(self) -> tuple[CounterSpec, ...]:
        return (*self.requests, *self.streams, *self.tokens, *self.spend)

    def keys(self, prefix: str) -> list[str]:
        return [self.slot_key, *counter_keys(prefix, self.counters)]

    def args(self) -> list[object]:
        args: list[object] = [
            self.now,
            self.deadline,
            self.lease_id,
            -1 if self.slot_limit is None else self.slot_limit,
            self.slot_ttl,
            len(self.requests),
            len(self.streams),
            len(self.tokens),
            self.token_amount,
            len(self.spend),
            self.spend_amount,
        ]
        for counter in self.counters:
            args += [counter.limit, counter.ttl_seconds]
        return args


def counter_keys(prefix: str, counters: tuple[CounterSpec, ...] | list[CounterSpec]) -> list[str]:
    """The three keys of each counter, in the ledger's layout."""
    return [
        f"{prefix}:{counter.key}:{part}" for counter in counters for part in ("used", "leases", "amounts")
    ]


@dataclass(frozen=True)
class ChatAdmitResult:
    """`status` is 'ok', or what refused: 'slot', 'requests' or 'held' (a stream or token
    limit, or a budget); `counter` indexes `ChatAdmitCall.counters` (from 0); `used` is each counter's
    total after an admission."""

    status: str
    counter: int
    refused_used: int
    used: tuple[int, ...]

    @classmethod
    def parse(cls, reply: list[Any]) -> "ChatAdmitResult":
        status = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
        return cls(
            status=status,
            counter=int(reply[1]) - 1,
            refused_used=int(reply[2]),
            used=tuple(int(value) for value in reply[3:]),
        )


def finish_args(
    *,
    lease_id: str,
    release_slot: bool,
    streams: int,
    tokens: int,
    tokens_used: int,
    spend_used: int,
    usage_row: str,
    ttls: list[int],
) -> list[object]:
    return [
        lease_id,
        "1" if release_slot else "0",
        streams,
        tokens_used,
        usage_row,
        tokens,
        spend_used,
        *ttls,
    ]

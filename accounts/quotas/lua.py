"""Lua shared by the quota scripts (`redis_ledger`, `chat_scripts`).

Amounts reach Redis as the text they came in (ARGV, HGET), never through a Lua number: Lua's
numbers are doubles, printed with 14 digits, and a budget's ledger units (spend.money) run
past that. Only comparisons use numbers (exact below 2^53, off by parts in 10^16 above).
"""

# Give back the leases of one counter whose deadline has passed (its three keys, and now).
EXPIRE_LEASES = """
local function expire_leases(used_key, leases_key, amounts_key, now)
  for _, expired in ipairs(redis.call('ZRANGEBYSCORE', leases_key, '-inf', now)) do
    local lent = redis.call('HGET', amounts_key, expired)
    if lent then redis.call('DECRBY', used_key, lent) end
    redis.call('HDEL', amounts_key, expired)
    redis.call('ZREM', leases_key, expired)
  end
end
"""

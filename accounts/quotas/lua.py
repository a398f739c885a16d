"""Lua shared by the quota scripts (`redis_ledger`, `chat_scripts`)."""

# Give back the leases of one counter whose deadline has passed (its three keys, and now).
EXPIRE_LEASES = """
local function expire_leases(used_key, leases_key, amounts_key, now)
  for _, expired in ipairs(redis.call('ZRANGEBYSCORE', leases_key, '-inf', now)) do
    local lent = tonumber(redis.call('HGET', amounts_key, expired) or '0')
    redis.call('DECRBY', used_key, lent)
    redis.call('HDEL', amounts_key, expired)
    redis.call('ZREM', leases_key, expired)
  end
end
"""

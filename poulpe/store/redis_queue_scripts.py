"""The Redis store's Lua scripts for QUEUE jobs leased to external workers (SPEC 6): a lease taken, and leases that
ran out (the keys they use are listed in redis_scripts.py)."""

from __future__ import annotations

# ARGV: base, type, now, n, lease end, worker. Reserves up to n due QUEUE jobs of the type for the worker: out of
# `q:<type>`, into `xlease`, owner `x:?:<type>` until the caller's follow-up `save` records the attempt (a
# reservation whose save never came is put back by EXPIRED). Returns the records.
LEASE_QUEUE = """
local B, kind, now, n, until_ = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local ids = redis.call('ZRANGEBYSCORE', B..'q:'..kind, '-inf', now, 'LIMIT', 0, n)
local records = {}
for _, id in ipairs(ids) do
  redis.call('ZREM', B..'q:'..kind, id)
  local record = redis.call('GET', B..'job:'..id)
  if record then
    redis.call('ZADD', B..'xlease', until_, id)
    redis.call('HSET', B..'owner', id, 'x:?:'..kind)
    records[#records + 1] = record
  end
end
return records
"""

# ARGV: base, now, limit. External leases that ended: reservations never completed go straight back to their queue;
# the others are returned (their records), for the caller to end with `save` held by the lease's worker (only one
# caller's save can succeed).
EXPIRED = """
local B, now, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local ids = redis.call('ZRANGEBYSCORE', B..'xlease', '-inf', now, 'LIMIT', 0, limit)
local records = {}
for _, id in ipairs(ids) do
  local owner = redis.call('HGET', B..'owner', id) or ''
  if string.sub(owner, 1, 4) == 'x:?:' then
    redis.call('ZREM', B..'xlease', id)
    redis.call('HDEL', B..'owner', id)
    redis.call('ZADD', B..'q:'..string.sub(owner, 5), now, id)
    redis.call('PUBLISH', B..'queued', string.sub(owner, 5))
  else
    local record = redis.call('GET', B..'job:'..id)
    if record then
      records[#records + 1] = record
    else
      redis.call('ZREM', B..'xlease', id)
    end
  end
end
return records
"""

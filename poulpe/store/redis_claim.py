"""The claim script of the Redis store: the dispatch rule (SPEC 10.1) applied in Redis, across every process.

The keys it reads and writes are listed in redis_scripts.py, with the scripts they share (`MOVE`).
"""

from __future__ import annotations

from poulpe.store.redis_scripts import MOVE

# ARGV: base, now, n, lease end, token, recheck ('1' after a claim whose answer was lost), default parallelism,
# default rate, default period (0: none), then the ids this process holds. Takes back leases that ran out (their
# process is gone: the job is due again at once); on a recheck, also this process's leases on jobs it does not
# hold (claimed by the call whose answer never came: no attempt of theirs began, so their count in `tries` goes
# back by one). Then moves due jobs into their key's ready set and claims up
# to n by the dispatch rule: the highest priority first; among equal priorities, keys take turns (the shared turn
# counter); within a key, due time then acceptance order; a key that is paused, at its parallelism (jobs leased
# now, by any process) or out of tokens is passed over; each job claimed has the attempt it may begin counted in
# `tries`. Returns {records, next due, next lease end, next token, {key, why, ...} of the keys passed over, attempt
# numbers}: a claimed job's attempt number above its record's count means earlier attempts began unrecorded.
CLAIM = (
    MOVE
    + """
local B, now, n, until_, token = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], ARGV[5]
local dpar, drate, dperiod = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local function back(id)
  redis.call('ZREM', B..'lease', id)
  redis.call('HDEL', B..'owner', id)
  release(B, id)
  redis.call('ZADD', B..'due', now, id)
end
if ARGV[6] == '1' then
  local held = {}
  for i = 10, #ARGV do held[ARGV[i]] = true end
  for _, id in ipairs(redis.call('ZRANGE', B..'lease', 0, -1)) do
    if not held[id] and redis.call('HGET', B..'owner', id) == token then
      back(id)
      if tonumber(redis.call('HGET', B..'tries', id) or '0') > 0 then redis.call('HINCRBY', B..'tries', id, -1) end
    end
  end
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', B..'lease', '-inf', now, 'LIMIT', 0, 1000)) do back(id) end
-- due jobs to their key's ready set (1,000 a call: a claim stays short; the next one goes on)
local moved = redis.call('ZRANGEBYSCORE', B..'due', '-inf', now, 'WITHSCORES', 'LIMIT', 0, 1000)
for i = 1, #moved, 2 do
  local id, at = moved[i], moved[i + 1]
  redis.call('ZREM', B..'due', id)
  local meta = redis.call('HGET', B..'jmeta', id)
  if meta then
    local p, seq, key = split_meta(meta)
    if redis.call('ZADD', B..'rq:'..p..':'..key, at, seq..'|'..id) == 1 then
      redis.call('HINCRBY', B..'kready', key, 1)
    end
    if redis.call('ZSCORE', B..'rk:'..p, key) == false then
      redis.call('ZADD', B..'rk:'..p, redis.call('INCR', B..'turn'), key)
    end
    redis.call('ZADD', B..'prios', -tonumber(p), p)
  end
end
local seen = {}
local function read_limits(key)
  local par, rate, period = dpar, drate, dperiod
  local own = redis.call('HGET', B..'keys', key)
  if own then
    local l = cjson.decode(own)
    if l.paused then return nil, nil, nil, true end
    if type(l.parallelism) == 'number' then par = l.parallelism end
    if type(l.rate) == 'number' then rate, period = l.rate, tonumber(l.period) or 1.0 end
  end
  return par, rate, period, false
end
local function limits_of(key)  -- read once per claim
  local l = seen[key]
  if l == nil then
    local par, rate, period, paused = read_limits(key)
    l = {par, rate, period, paused}
    seen[key] = l
  end
  return l[1], l[2], l[3], l[4]
end
local records, passed, tries, next_token = {}, {}, {}, nil
local paused_all = redis.call('HGET', B..'flags', 'paused') == '1'
if n > 0 and not paused_all then
  for _, p in ipairs(redis.call('ZRANGE', B..'prios', 0, -1)) do
    if #records >= n then break end
    local rk = B..'rk:'..p
    local idle = 0  -- passes that took nothing: give up after 10 (the first 200 keys by turn were all held)
    while #records < n do
      local keys = redis.call('ZRANGE', rk, 0, 199)
      if #keys == 0 then
        redis.call('ZREM', B..'prios', p)
        break
      end
      local took = false
      for _, key in ipairs(keys) do
        if #records >= n then break end
        redis.call('ZADD', rk, redis.call('INCR', B..'turn'), key)  -- its turn is used, taken or passed over
        local why, tokens = nil, nil
        local par, rate, period, paused = nil, nil, 1.0, false
        if key ~= '' then
          par, rate, period, paused = limits_of(key)
          if paused then
            why = 'paused'
          elseif par and par > 0 and tonumber(redis.call('HGET', B..'krun', key) or '0') >= par then
            why = 'parallelism'
            redis.call('HSET', B..'kfull', key, '1')
          elseif rate and rate > 0 then
            tokens = math.min(1, rate)
            local bucket = redis.call('HGET', B..'kb', key)
            if bucket then
              local sep = string.find(bucket, ':', 1, true)
              local left, stamp = tonumber(string.sub(bucket, 1, sep - 1)), tonumber(string.sub(bucket, sep + 1))
              tokens = math.min(rate, left + math.max(0, now - stamp) * rate / period)
            end
            if tokens < 0.9999 then  -- (float sums: a refill of exactly one token may fall just short)
              why = 'rate'
              local at = now + (1 - tokens) * period / rate
              if next_token == nil or at < next_token then next_token = at end
            end
          end
        end
        local rq = B..'rq:'..p..':'..key
        if why then
          passed[#passed + 1] = key
          passed[#passed + 1] = why
        else
          local popped = redis.call('ZPOPMIN', rq)
          if popped[1] then
            local member = popped[1]
            local id = string.sub(member, string.find(member, '|', 1, true) + 1)
            if redis.call('HINCRBY', B..'kready', key, -1) <= 0 then redis.call('HDEL', B..'kready', key) end
            local record = redis.call('GET', B..'job:'..id)
            if record then
              redis.call('ZADD', B..'lease', until_, id)
              redis.call('HSET', B..'owner', id, token)
              records[#records + 1] = record
              took = true
              local began = redis.call('HGET', B..'tries', id)
              if not began then  -- a job stored before `tries` existed: its record has the count
                local ok, job = pcall(cjson.decode, record)
                began = ok and type(job) == 'table' and tonumber(job['attempts']) or 0
              end
              tries[#tries + 1] = tonumber(began) + 1
              redis.call('HSET', B..'tries', id, tries[#tries])
              if key ~= '' then
                redis.call('HINCRBY', B..'krun', key, 1)
                redis.call('HSET', B..'jkey', id, key)
                if tokens then redis.call('HSET', B..'kb', key, string.format('%.9f:%.6f', tokens - 1, now)) end
                redis.call('ZADD', B..'ks:'..key, now, id)
                redis.call('ZREMRANGEBYSCORE', B..'ks:'..key, '-inf', now - math.max(period or 1.0, 1.0))
              end
            end
          end
        end
        if redis.call('ZCARD', rq) == 0 then redis.call('ZREM', rk, key) end
      end
      if not took then
        idle = idle + 1
        if #keys < 200 or idle >= 10 then break end
      end
    end
  end
end
local due = redis.call('ZRANGE', B..'due', 0, 0, 'WITHSCORES')
local lease = redis.call('ZRANGE', B..'lease', 0, 0, 'WITHSCORES')
return {records, due[2] or '', lease[2] or '', next_token and string.format('%.6f', next_token) or '', passed, tries}
"""
)

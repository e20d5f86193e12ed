"""The claim script of the Redis store: the dispatch rule (SPEC 10.1) applied in Redis, across every process; and how
a claimed job's attempts that may have begun unrecorded are closed.

The keys it reads and writes are listed in redis_scripts.py, with the scripts they share (`MOVE`).
"""

from __future__ import annotations

import logging

from poulpe.job import Job, Status
from poulpe.store.redis_scripts import MOVE

log = logging.getLogger("poulpe.store.redis")
_STOPPED = "interrupted: the poulpe process running it stopped"
_UNRECORDED = "interrupted: the poulpe process that claimed it stopped (this attempt may not have begun)"

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
-- due jobs to their key's ready set (1,000 a call: a claim stays short; the next one goes on), a few commands for
-- each key and priority among them rather than for each job
local moved = redis.call('ZRANGEBYSCORE', B..'due', '-inf', now, 'WITHSCORES', 'LIMIT', 0, 1000)
if #moved > 0 then
  local ids = {}
  for i = 1, #moved, 2 do ids[#ids + 1] = moved[i] end
  redis.call('ZREM', B..'due', unpack(ids))
  local metas = redis.call('HMGET', B..'jmeta', unpack(ids))
  local groups, order, prios = {}, {}, {}
  for j, id in ipairs(ids) do
    local meta = metas[j]
    if meta then
      local p, seq, key = split_meta(meta)
      local rq = B..'rq:'..p..':'..key
      local g = groups[rq]
      if g == nil then  -- first seen in due order: keys new to a priority get their turns in that order
        g = {p = p, key = key, members = {}}
        groups[rq] = g
        order[#order + 1] = rq
        prios[p] = true
      end
      g.members[#g.members + 1] = moved[2 * j]
      g.members[#g.members + 1] = seq..'|'..id
    end
  end
  for _, rq in ipairs(order) do
    local g = groups[rq]
    local added = 0
    for s = 1, #g.members, 1000 do
      added = added + redis.call('ZADD', rq, unpack(g.members, s, math.min(s + 999, #g.members)))
    end
    if added > 0 then redis.call('HINCRBY', B..'kready', g.key, added) end
    if redis.call('ZSCORE', B..'rk:'..g.p, g.key) == false then
      redis.call('ZADD', B..'rk:'..g.p, redis.call('INCR', B..'turn'), g.key)
    end
  end
  for p in pairs(prios) do redis.call('ZADD', B..'prios', -tonumber(p), p) end
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
-- leases the jobs `ids` (just taken from `key`'s ready set, in order) to this process; false if none was left
local function take(ids, key, tokens, period)
  local names = {}
  for i, id in ipairs(ids) do names[i] = B..'job:'..id end
  local found = redis.call('MGET', unpack(names))
  local got, leases, owners = {}, {}, {}
  for i, id in ipairs(ids) do
    if found[i] then
      got[#got + 1] = id
      leases[#leases + 1] = until_
      leases[#leases + 1] = id
      owners[#owners + 1] = id
      owners[#owners + 1] = token
    end
  end
  if #got == 0 then return false end
  redis.call('ZADD', B..'lease', unpack(leases))
  redis.call('HSET', B..'owner', unpack(owners))
  local counted = redis.call('HMGET', B..'tries', unpack(got))
  local now_tries = {}
  local j = 0
  for i, id in ipairs(ids) do
    if found[i] then
      j = j + 1
      local began = counted[j]
      if not began then  -- a job stored before `tries` existed: its record has the count
        local ok, job = pcall(cjson.decode, found[i])
        began = ok and type(job) == 'table' and tonumber(job['attempts']) or 0
      end
      records[#records + 1] = found[i]
      tries[#tries + 1] = tonumber(began) + 1
      now_tries[#now_tries + 1] = id
      now_tries[#now_tries + 1] = tries[#tries]
    end
  end
  redis.call('HSET', B..'tries', unpack(now_tries))
  if key ~= '' then
    local keyed, started = {}, {}
    for _, id in ipairs(got) do
      keyed[#keyed + 1] = id
      keyed[#keyed + 1] = key
      started[#started + 1] = now
      started[#started + 1] = id
    end
    redis.call('HINCRBY', B..'krun', key, #got)
    redis.call('HSET', B..'jkey', unpack(keyed))
    if tokens then redis.call('HSET', B..'kb', key, string.format('%.9f:%.6f', tokens - 1, now)) end
    redis.call('ZADD', B..'ks:'..key, unpack(started))
    redis.call('ZREMRANGEBYSCORE', B..'ks:'..key, '-inf', now - math.max(period or 1.0, 1.0))
  end
  return true
end
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
        local why, tokens, running = nil, nil, 0
        local par, rate, period, paused = nil, nil, 1.0, false
        if key ~= '' then
          par, rate, period, paused = limits_of(key)
          if par and par > 0 and not paused then running = tonumber(redis.call('HGET', B..'krun', key) or '0') end
          if paused then
            why = 'paused'
          elseif par and par > 0 and running >= par then
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
        local want, got = 1, 0
        if why then
          passed[#passed + 1] = key
          passed[#passed + 1] = why
        else
          -- the only key left at this priority takes every turn until it is held or empty: take those jobs at once
          if #keys == 1 and not tokens then
            want = math.min(n - #records, 1000)
            if par and par > 0 then want = math.min(want, par - running) end
          end
          local popped = redis.call('ZPOPMIN', rq, want)
          got = #popped / 2
          if got > 0 then
            local ids = {}
            for i = 1, #popped, 2 do
              local member = popped[i]
              ids[#ids + 1] = string.sub(member, string.find(member, '|', 1, true) + 1)
            end
            if redis.call('HINCRBY', B..'kready', key, -got) <= 0 then redis.call('HDEL', B..'kready', key) end
            if take(ids, key, tokens, period) then took = true end
          end
        end
        if why or got == want then
          if redis.call('ZCARD', rq) == 0 then redis.call('ZREM', rk, key) end
        else
          redis.call('ZREM', rk, key)  -- fewer than asked: its ready set is empty
        end
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


def count_unrecorded(job: Job, began: int, now: float) -> None:
    """Count attempts a process may have begun on a claim without its `running` mark reaching Redis (it died first).

    `began` is the highest attempt number that may have begun (the claims counted it). Those attempts are closed as
    interrupted, so the claiming process runs the next number, never a repeated one. A job the dead process held
    ready without starting it is counted too: from Redis, the two look the same.
    """
    if job.attempts >= began:
        return
    if job.status is Status.RUNNING:
        job.end_attempt(False, _STOPPED, now)
    job.attempts = began - 1
    job.begin_attempt(None, None, now)
    job.end_attempt(False, _UNRECORDED, now)
    job.status = Status.QUEUED
    log.info("job %s: attempt %d may have begun on a process that stopped; it runs again", job.id, began)

"""The Lua scripts of the Redis store: every step that touches more than one key runs as one script, atomically.

Every key of a namespace shares one hash tag (`{poulpe}:job:<id>`, `{poulpe}:due`, ...), so the scripts work on
Redis Cluster too: a namespace lives in one slot. KEYS[1] is always the namespace's `due` key, which routes the
call to that slot; the other keys are built from ARGV[1], the tagged base, inside the same slot.

Keys under a base B:
  B job:<id>      the job record (msgspec JSON, what `decode_job` reads)
  B stat          hash   id -> status          (the indexes below need the old status to move a job)
  B all           zset   id -> seq             (listing, newest first)
  B st:<status>   zset   id -> seq             (listing by status)
  B count         hash   status -> jobs        (sys_info counts without scanning)
  B day:<date>    hash   succeeded|failed -> n (kingtask's per-day counts)
  B due           zset   id -> run_at          (waiting for a process to claim it)
  B lease         zset   id -> lease end       (claimed by a live process; taken back when it runs out)
  B q:<type>      zset   id -> run_at          (QUEUE jobs waiting for an external worker of that task type)
  B xlease        zset   id -> lease end       (QUEUE jobs leased to an external worker)
  B owner         hash   id -> holder          (a process token, or `x:<worker>:<attempt>` for external leases)
  B tries         hash   id -> attempt number  (the highest a poulpe process may have begun: counted at claim time,
                                               so an attempt whose `running` mark never arrived is still counted)
  B done          zset   id -> finished_at     (final jobs, for the result TTL)
  Flow control (SPEC 10.1): a due job moves from `due` to its key's ready set when a claim looks at it.
  B jmeta         hash   id -> "<priority>|<seq>|<key>" (poulpe's own waiting jobs: where they go once due)
  B rq:<p>:<key>  zset   "<seq>|<id>" -> run_at (due jobs of a key and priority; the member orders equal due times)
  B rk:<p>        zset   key -> turn               (keys with due jobs at priority p; the lowest turn goes next)
  B prios         zset   p -> -p                   (priorities with due jobs, highest first)
  B turn          string                           (the turn counter every process shares)
  B kready        hash   key -> due jobs waiting   (GET /keys `waiting`)
  B kfull         hash   key -> 1                  (a claim passed the key over for its parallelism: tell of room)
  B krun          hash   key -> jobs leased now    (counted against `parallelism` across processes)
  B jkey          hash   id -> key                 (the key a leased job counts against)
  B kb            hash   key -> "<tokens>:<stamp>" (each key's token bucket)
  B ks:<key>      zset   id -> start time          (starts in the last period: GET /keys `started_in_period`)
  B keys          hash   key -> limits JSON        (PUT /keys/{key})
  B flags         hash   paused -> 0|1             (POST /pause)
  Batches (SPEC 10.3, redis_batches.py):
  B batch:<id>    hash   record, total, pending, succeeded, dead, cancelled, created_at, finished_at
  B batches_done  zset   id -> when it may be taken (a batch whose completion is owed; a teller holds it a while)
  Windows (SPEC 10.2), each a string that expires with its window (PX), so none outlives it:
  B u:<key>       string                           (the job holding a unique key's window)
  B d:<key>       string                           (the job waiting under a debounce key)
Channels: B work (a job came due sooner than any process knew, or a key got room), B limits (keys' limits or
the pause changed), B done (payload: the ids of jobs that became final, separated by spaces),
B cancel (payload: a running job's id to cancel after its attempt), B queued (payload: a task type that has a QUEUE
job waiting), B xlease (payload: an external lease's end).

A job's "place" argument says which waiting set it belongs to: `due` for poulpe's own workers, `q:<type>` for a
QUEUE job, or '' (nowhere: it is final).
"""

from __future__ import annotations

from poulpe.store.redis_args import ARGS
from poulpe.store.redis_queue_scripts import EXPIRED, LEASE_QUEUE

# Moves a job between status indexes and counts; shared by the scripts below. It starts with ARGS, so every script
# built on it unpacks its arguments (the others get ARGS in STORE_SCRIPTS).
MOVE = (
    ARGS
    + """
local function move(B, id, new, seq)
  local old = redis.call('HGET', B..'stat', id)
  if old == new then return old end
  if old then
    redis.call('ZREM', B..'st:'..old, id)
    redis.call('HINCRBY', B..'count', old, -1)
  else
    redis.call('ZADD', B..'all', seq, id)
  end
  redis.call('ZADD', B..'st:'..new, seq, id)
  redis.call('HINCRBY', B..'count', new, 1)
  redis.call('HSET', B..'stat', id, new)
  return old
end
-- one command for many members or fields (1,000 arguments a call, pairs kept whole)
local function bulk(command, key, list)
  for s = 1, #list, 1000 do redis.call(command, key, unpack(list, s, math.min(s + 999, #list))) end
end
-- move() for jobs new to the indexes, all of one status (list: id, seq, id, seq...): a few commands in all
local function move_new(B, status, list)
  local ids, stats, scored = {}, {}, {}
  for s = 1, #list, 2 do ids[#ids + 1] = list[s] end
  local olds = {}
  for s = 1, #ids, 1000 do
    for _, old in ipairs(redis.call('HMGET', B..'stat', unpack(ids, s, math.min(s + 999, #ids)))) do
      olds[#olds + 1] = old
    end
  end
  for j, id in ipairs(ids) do
    if olds[j] then
      move(B, id, status, list[2 * j])  -- (an index entry without its record: moved as any other)
    else
      stats[#stats + 1] = id
      stats[#stats + 1] = status
      scored[#scored + 1] = list[2 * j]
      scored[#scored + 1] = id
    end
  end
  if #stats == 0 then return end
  bulk('ZADD', B..'all', scored)
  bulk('ZADD', B..'st:'..status, scored)
  redis.call('HINCRBY', B..'count', status, #stats / 2)
  bulk('HSET', B..'stat', stats)
end
-- flow control: where a due job waits (its key's ready set), and the key slot a leased job holds
local function split_meta(meta)
  local a = string.find(meta, '|', 1, true)
  local b = string.find(meta, '|', a + 1, true)
  return string.sub(meta, 1, a - 1), string.sub(meta, a + 1, b - 1), string.sub(meta, b + 1)
end
local function unready(B, id)
  local meta = redis.call('HGET', B..'jmeta', id)
  if not meta then return end
  local p, seq, key = split_meta(meta)
  local rq = B..'rq:'..p..':'..key
  if redis.call('ZREM', rq, seq..'|'..id) == 1 then
    if redis.call('HINCRBY', B..'kready', key, -1) <= 0 then redis.call('HDEL', B..'kready', key) end
    if redis.call('ZCARD', rq) == 0 then redis.call('ZREM', B..'rk:'..p, key) end
  end
end
local function release(B, id)
  local key = redis.call('HGET', B..'jkey', id)
  if not key then return end
  redis.call('HDEL', B..'jkey', id)
  if redis.call('HINCRBY', B..'krun', key, -1) <= 0 then redis.call('HDEL', B..'krun', key) end
  -- a key a claim passed over for its parallelism has room now: tell the processes (only then: one message per
  -- job ended would wake every process for nothing)
  if redis.call('HDEL', B..'kfull', key) == 1 then redis.call('PUBLISH', B..'work', '') end
end
-- a batch's counters (SPEC 10.3) move with its job's status; the write that brings `pending` to 0 makes its
-- completion owed (`batches_done`, scored by when it may be taken), once
local function count_batch(B, batch, old, new, finished_at)
  local bk = B..'batch:'..batch
  if old == 'succeeded' or old == 'dead' or old == 'cancelled' then
    redis.call('HINCRBY', bk, old, -1)
    redis.call('HINCRBY', bk, 'pending', 1)
  end
  if new == 'succeeded' or new == 'dead' or new == 'cancelled' then
    redis.call('HINCRBY', bk, new, 1)
    if redis.call('HINCRBY', bk, 'pending', -1) == 0 and redis.call('HSETNX', bk, 'finished_at', finished_at) == 1 then
      redis.call('ZADD', B..'batches_done', 0, batch)
    end
  end
end
local function earliest(B)
  local first = redis.call('ZRANGE', B..'due', 0, 0, 'WITHSCORES')
  if first[2] then return tonumber(first[2]) end
  return nil
end
"""
)

# ARGV: base, then groups of 10: id, record, status, run_at, seq, place, attempts, meta ("<priority>|<seq>|<key>"),
# unique key ('' for none), unique window in ms. Returns, per job, 0 when stored by this submission, or the stored
# record when the id was known (a duplicate) or its unique key's window is held by a job that still exists.
# "This submission" includes the same call sent again after its reply was lost: the stored job's seq is its own.
ADD_BODY = """
local B = ARGV[1]
local soonest = earliest(B)
local wake = false
local kinds = {}
local out = {}
local names = {}
for i = 2, #ARGV, 10 do names[#names + 1] = B..'job:'..ARGV[i] end
local found = {}
for s = 1, #names, 1000 do
  for _, record in ipairs(redis.call('MGET', unpack(names, s, math.min(s + 999, #names)))) do
    found[#found + 1] = record
  end
end
-- the new jobs and their indexes are written after the loop, a command for each index rather than for each job
local mine, records, lists, statuses, places = {}, {}, {}, {}, {}
local function push(lists, name, a, b)
  local list = lists[name]
  if list == nil then
    list = {}
    lists[name] = list
  end
  list[#list + 1] = a
  list[#list + 1] = b
end
for i = 2, #ARGV, 10 do
  local id, record, status, run_at = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local key = B..'job:'..id
  local known = found[(i + 8) / 10]
  local seq = mine[id]  -- stored earlier in this call
  if seq then
    known = records[id]
  elseif known then
    seq = redis.call('ZSCORE', B..'all', id)
  end
  local ukey, first = ARGV[i + 8], false
  if not known and ukey ~= '' then  -- the window expires with its key (PX): nothing to clean up
    local holder = redis.call('GET', B..'u:'..ukey)
    if holder then first = records[holder] or redis.call('GET', B..'job:'..holder) end
  end
  if known and tonumber(seq) == tonumber(ARGV[i + 4]) then
    out[#out + 1] = 0
  elseif known then
    out[#out + 1] = known
  elseif first then
    out[#out + 1] = first
  else
    if ukey ~= '' then redis.call('SET', B..'u:'..ukey, id, 'PX', ARGV[i + 9]) end
    records[id] = record
    push(lists, 'records', key, record)
    mine[id] = ARGV[i + 4]
    push(lists, 'tries', id, ARGV[i + 6])
    push(statuses, status, id, ARGV[i + 4])
    local place = ARGV[i + 5]
    if place ~= '' then
      local at = tonumber(run_at)
      push(places, place, run_at, id)
      if place == 'due' then push(lists, 'jmeta', id, ARGV[i + 7]) end
      if place == 'due' and (soonest == nil or at < soonest) then
        soonest = at
        wake = true
      elseif place ~= 'due' then
        kinds[string.sub(place, 3)] = true
      end
    end
    out[#out + 1] = 0
  end
end
if lists.tries then
  for s = 1, #lists.records, 1000 do redis.call('MSET', unpack(lists.records, s, math.min(s + 999, #lists.records))) end
  bulk('HSET', B..'tries', lists.tries)
  for status, list in pairs(statuses) do move_new(B, status, list) end
  bulk('HSET', B..'jmeta', lists.jmeta or {})
  for place, list in pairs(places) do bulk('ZADD', B..place, list) end
end
if wake then redis.call('PUBLISH', B..'work', '') end
for kind in pairs(kinds) do redis.call('PUBLISH', B..'queued', kind) end
return out
"""
ADD = MOVE + ADD_BODY

# ARGV: base, id, record, status, run_at, seq, token, finished_at ('' if none), day column ('' or
# '<date>:succeeded' / '<date>:failed'), place, held ('1': write only if `token` holds the job), external lease end
# ('' unless a QUEUE job starts running for an external worker), attempts, meta ("<priority>|<seq>|<key>"), batch
# ('' or the batch id whose counters the job's status moves).
# Returns 1 when written, 0 when the job is held by someone else (nothing written).
# The attempt count in `tries` follows the record: up to it when an attempt begins, back to it when the job waits
# again (its writer held it, so no other attempt began meanwhile), gone when it is final.
SAVE_BODY = """
local B, id, record, status, token, place = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[7], ARGV[10]
local owner = redis.call('HGET', B..'owner', id)
if ARGV[11] == '1' then
  if owner ~= token then return 0 end
elseif owner and owner ~= token and string.sub(owner, 1, 2) ~= 'x:' then
  return 0  -- another poulpe process claimed it (an external worker's lease gives way to poulpe's own writes)
end
redis.call('SET', B..'job:'..id, record)
local old = move(B, id, status, ARGV[6])
local final = status == 'succeeded' or status == 'dead' or status == 'cancelled'
if ARGV[15] ~= '' and old ~= status then count_batch(B, ARGV[15], old, status, ARGV[8]) end
local attempts = tonumber(ARGV[13])
if final then
  redis.call('HDEL', B..'tries', id)
elseif status ~= 'running' or attempts > tonumber(redis.call('HGET', B..'tries', id) or '0') then
  redis.call('HSET', B..'tries', id, attempts)
end
if final or status ~= 'running' then
  redis.call('ZREM', B..'lease', id)
  redis.call('ZREM', B..'xlease', id)
  redis.call('HDEL', B..'owner', id)
  release(B, id)
end
if final then
  redis.call('ZREM', B..'due', id)
  unready(B, id)
  redis.call('HDEL', B..'jmeta', id)
  if place ~= '' and place ~= 'due' then redis.call('ZREM', B..place, id) end
  redis.call('ZADD', B..'done', ARGV[8], id)
  local was_final = old == 'succeeded' or old == 'dead' or old == 'cancelled'
  if ARGV[9] ~= '' and not was_final then
    local sep = string.find(ARGV[9], ':', 1, true)
    redis.call('HINCRBY', B..'day:'..string.sub(ARGV[9], 1, sep - 1), string.sub(ARGV[9], sep + 1), 1)
  end
  redis.call('PUBLISH', B..'done', id)
elseif status == 'running' then
  if ARGV[12] ~= '' then  -- an external worker's lease begins (or is extended)
    redis.call('ZADD', B..'xlease', ARGV[12], id)
    redis.call('HSET', B..'owner', id, token)
    redis.call('PUBLISH', B..'xlease', ARGV[12])
  end
else
  redis.call('ZREM', B..'done', id)
  if place ~= '' then
    local at = tonumber(ARGV[5])
    local soonest = earliest(B)
    if place == 'due' then
      unready(B, id)
      redis.call('HSET', B..'jmeta', id, ARGV[14])
    end
    redis.call('ZADD', B..place, at, id)
    if place == 'due' and (soonest == nil or at < soonest) then redis.call('PUBLISH', B..'work', '') end
    if place ~= 'due' then redis.call('PUBLISH', B..'queued', string.sub(place, 3)) end
  end
end
return 1
"""
SAVE = MOVE + SAVE_BODY

# ARGV: base, SAVE's 14 arguments, then ADD's groups of 10 (a final job's children, SPEC 10.3): the job's final state
# and its children in one script, so Redis holds both or neither. Returns {0} when the job is held by someone else
# (nothing written), else {1, then ADD's answer for each child}.
SAVE_FINAL = (
    MOVE
    + "local function save_job(ARGV)\n"
    + SAVE_BODY
    + "end\nlocal function add_jobs(ARGV)\n"
    + ADD_BODY
    + """end
local head = {}
for i = 1, 15 do head[i] = ARGV[i] end
if save_job(head) == 0 then return {0} end
local rest = {ARGV[1]}
for i = 16, #ARGV do rest[#rest + 1] = ARGV[i] end
local out = add_jobs(rest)
table.insert(out, 1, 1)
return out
"""
)

# ARGV: base, lease end, token, ids... Extends the leases this process still holds; returns the ids another poulpe
# process holds now. A job nobody holds is not among them: it ended (or went back to wait) since the caller listed
# it, or its lease ran out and no process claimed it yet (its outcome may still be saved).
RENEW = """
local B, until_, token = ARGV[1], ARGV[2], ARGV[3]
local lost = {}
for i = 4, #ARGV do
  local id = ARGV[i]
  local owner = redis.call('HGET', B..'owner', id)
  if owner == token then
    redis.call('ZADD', B..'lease', 'XX', until_, id)
  elseif owner then
    lost[#lost + 1] = id
  end
end
return lost
"""

# Removes one job from every index and deletes its record; shared by PURGE and DELETE.
_FORGET = """
local function forget(B, id)
  local status = redis.call('HGET', B..'stat', id)
  if status then
    redis.call('ZREM', B..'st:'..status, id)
    redis.call('HINCRBY', B..'count', status, -1)
  end
  redis.call('HDEL', B..'stat', id)
  redis.call('HDEL', B..'owner', id)
  redis.call('HDEL', B..'tries', id)
  release(B, id)
  unready(B, id)
  redis.call('HDEL', B..'jmeta', id)
  for _, index in ipairs({'all', 'done', 'due', 'lease', 'xlease'}) do redis.call('ZREM', B..index, id) end
  return redis.call('DEL', B..'job:'..id)
end
"""

# ARGV: base, finished before, limit. Forgets final jobs past their TTL; returns how many went.
PURGE = (
    MOVE
    + _FORGET
    + """
local B = ARGV[1]
local ids = redis.call('ZRANGEBYSCORE', B..'done', '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do forget(B, id) end
return #ids
"""
)

# ARGV: base, id. Forgets one job; returns 1 when it existed.
DELETE = MOVE + _FORGET + "return forget(ARGV[1], ARGV[2])\n"

# ARGV: base, id, expected record, new record. A single-key compare-and-set: the record changes only if nobody
# wrote it since the caller read it.
SWAP = """
local key = ARGV[1]..'job:'..ARGV[2]
if redis.call('GET', key) ~= ARGV[3] then return 0 end
redis.call('SET', key, ARGV[4])
return 1
"""

STORE_SCRIPTS = {  # and `claim` (redis_claim.py) and `saves` (redis_saves_fold.py)
    "add": ADD,
    "save": SAVE,
    "save_final": SAVE_FINAL,
    "renew": ARGS + RENEW,
    "purge": PURGE,
    "delete": DELETE,
    "lease_queue": ARGS + LEASE_QUEUE,
    "expired": ARGS + EXPIRED,
    "swap": ARGS + SWAP,
}

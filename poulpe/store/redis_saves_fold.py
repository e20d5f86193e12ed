"""How the Redis link folds a pipeline's writes into script calls, and unfolds the answers: a run of `save`s in a
row goes as one `saves` call, so Redis writes their index entries together (docs/redis.md)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from poulpe.store.redis_scripts import MOVE, SAVE_BODY

SAVES_MAX = 500  # saves in one `saves` call at most

# ARGV: base, then SAVE's 14 arguments for each job (one pipeline's run of saves, in the order they were issued).
# Returns SAVE's answer for each. The common ones (an attempt's start or end on the process holding the job) write
# their index entries together at the end, a command for each index rather than for each job; any other runs as
# SAVE, after what the ones before it left is written. A job saved twice in a run is written in between too.
SAVES = (
    MOVE
    + "local function save_job(ARGV)\n"
    + SAVE_BODY
    + """end
local B = ARGV[1]
local later = {}  -- index writes owed: {command, key} -> flat arguments; counts: hash key -> field -> delta
local counts, owing, finished = {}, {}, {}  -- owing: the ids whose writes are owed
local function owe(command, key, a, b)
  local name = command..' '..key
  local list = later[name]
  if list == nil then
    list = {command = command, key = key}
    later[name] = list
  end
  list[#list + 1] = a
  if b ~= nil then list[#list + 1] = b end
end
local function count(key, field, delta)
  local fields = counts[key]
  if fields == nil then
    fields = {}
    counts[key] = fields
  end
  fields[field] = (fields[field] or 0) + delta
end
local function pay()
  for _, list in pairs(later) do
    for s = 1, #list, 1000 do
      if list.key == '' then
        redis.call(list.command, unpack(list, s, math.min(s + 999, #list)))
      else
        redis.call(list.command, list.key, unpack(list, s, math.min(s + 999, #list)))
      end
    end
  end
  for key, fields in pairs(counts) do
    for field, delta in pairs(fields) do
      if delta ~= 0 then redis.call('HINCRBY', key, field, delta) end
    end
  end
  if #finished > 0 then redis.call('PUBLISH', B..'done', table.concat(finished, ' ')) end
  later, counts, owing, finished = {}, {}, {}, {}
end
-- what the saves read of their jobs, read at once: a job saved twice in the run is read again the second time
local ids = {}
for i = 2, #ARGV, 14 do ids[#ids + 1] = ARGV[i] end
local owners = redis.call('HMGET', B..'owner', unpack(ids))
local stats = redis.call('HMGET', B..'stat', unpack(ids))
local counted = redis.call('HMGET', B..'tries', unpack(ids))
local seen = {}
local out = {}
local one = {B}
for i = 2, #ARGV, 14 do
  local id, record, status, token = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 5]
  local held, attempts = ARGV[i + 9], ARGV[i + 11]
  local k = (i + 12) / 14
  local again = seen[id]
  seen[id] = true
  if owing[id] then pay() end
  owing[id] = true
  local final = status == 'succeeded' or status == 'dead' or status == 'cancelled'
  local owner = false
  local quick = held == '0' and ARGV[i + 10] == '' and ARGV[i + 13] == '' and (final or status == 'running')
    and string.sub(token, 1, 2) ~= 'x:'
  if quick then
    if again then owner = redis.call('HGET', B..'owner', id) else owner = owners[k] end
    quick = owner == token
  end
  if not quick then
    pay()
    for j = 0, 13 do one[j + 2] = ARGV[i + j] end
    out[#out + 1] = save_job(one)
  else
    owe('MSET', '', B..'job:'..id, record)
    local old = stats[k]
    if again then old = redis.call('HGET', B..'stat', id) end
    if old ~= status then
      if old then
        owe('ZREM', B..'st:'..old, id)
        count(B..'count', old, -1)
      else
        owe('ZADD', B..'all', ARGV[i + 4], id)
      end
      owe('ZADD', B..'st:'..status, ARGV[i + 4], id)
      count(B..'count', status, 1)
      owe('HSET', B..'stat', id, status)
    end
    if final then
      owe('HDEL', B..'tries', id)
      owe('ZREM', B..'lease', id)
      owe('HDEL', B..'owner', id)
      local _, _, key = split_meta(ARGV[i + 12])
      if key ~= '' then release(B, id) end  -- (only a job with a key counts against one)
      owe('HDEL', B..'jmeta', id)
      owe('ZADD', B..'done', ARGV[i + 6], id)
      local was_final = old == 'succeeded' or old == 'dead' or old == 'cancelled'
      if ARGV[i + 7] ~= '' and not was_final then
        local sep = string.find(ARGV[i + 7], ':', 1, true)
        count(B..'day:'..string.sub(ARGV[i + 7], 1, sep - 1), string.sub(ARGV[i + 7], sep + 1), 1)
      end
      finished[#finished + 1] = id
    else
      local began = counted[k]
      if again then began = redis.call('HGET', B..'tries', id) end
      if tonumber(attempts) > tonumber(began or '0') then owe('HSET', B..'tries', id, attempts) end
    end
    out[#out + 1] = 1
  end
end
pay()
return out
"""
)


def fold_saves(ops: Sequence[tuple[str, list[Any], Any]]) -> list[tuple[str, list[Any], list[int]]]:
    """The script calls of a pipeline, each with the writes it carries: a run of two or more `save`s in a row goes
    as one `saves` call (Redis writes their index entries together), the other writes as they are. A save nobody
    waits for (an attempt's start) is left out when a later save of the same job by this process follows: that one
    writes the whole record and its indexes again, so nothing of the first would outlive the pipeline."""
    kept: list[int] = []
    later: set[tuple[str, str]] = set()
    for i in range(len(ops) - 1, -1, -1):
        name, args, fut = ops[i]
        if name == "save" and args[9] == "0":
            mine = (args[0], args[5])  # the job, and the token it is written for
            if fut is None and mine in later:
                continue
            later.add(mine)
        kept.append(i)
    kept.reverse()
    runs: list[tuple[str, list[Any], list[int]]] = []
    at = 0
    while at < len(kept):
        end = at + 1
        if ops[kept[at]][0] == "save":
            while end < len(kept) and ops[kept[end]][0] == "save" and end - at < SAVES_MAX:
                end += 1
        carried = kept[at:end]
        if len(carried) > 1:
            runs.append(("saves", [arg for i in carried for arg in ops[i][1]], carried))
        else:
            runs.append((ops[carried[0]][0], ops[carried[0]][1], carried))
        at = end
    return runs


def unfold_answers(runs: list[tuple[str, list[Any], list[int]]], answers: list[Any], n: int) -> list[Any]:
    """Each of the `n` writes' own answer (None for a save left out), from the answers of the calls `fold_saves` made (a
    failed `saves` fails each of its saves); WAIT's answer, after them, stays last."""
    results: list[Any] = [None] * n
    for (name, _, carried), answer in zip(runs, answers, strict=False):
        if name == "saves" and not isinstance(answer, Exception):
            for i, one in zip(carried, answer, strict=True):
                results[i] = one
        else:
            for i in carried:
                results[i] = answer
    results.extend(answers[len(runs) :])
    return results

"""The Redis store's part of bursts and windows (SPEC 10.2): what the `add` script needs of a unique window, and the
debounce script. A window is a Redis string that expires (PX): a unique window with its end, a debounce window a day
after its job's run time. No entry outlives its window by more."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from poulpe.errors import StoreUnavailable
from poulpe.job import Job, decode_job, encode_job
from poulpe.store.redis_scripts import MOVE

KEEP_S = 86400.0  # a debounce window's key lives this long after its job's run time (by then the job has started)


def unique_args(job: Job) -> list[Any]:
    """The unique key and the window in whole milliseconds (at least 1), or '' and 0 for a job without one."""
    if job.unique is None or job.unique_until is None:
        return ["", "0"]
    return [job.unique, str(max(1, round((job.unique_until - job.created_at) * 1000)))]


# ARGV: base, debounce key, expected id ('' for none), expected record, mode ('new' or 'replace'), then the job: id,
# record, status, run_at, seq, attempts, meta, and the window key's life in ms. The window's job is "live" while it
# waits unstarted: scheduled or queued, no attempt counted (`tries`), claimed by no process (`owner`).
# 'replace': stores the record in place of the live job, if it is still the expected one, unchanged. 'new': stores a
# new job and points the window at it, unless a live job other than the expected one holds the window.
# Returns {1} when done, {2, record} when the new job's id was known already, or {0, live record or nothing}: the
# caller looks again with that one.
DEBOUNCE = (
    MOVE
    + """
local B, dkey, expected, mode = ARGV[1], ARGV[1]..'d:'..ARGV[2], ARGV[3], ARGV[5]
local id, record, status, run_at, seq = ARGV[6], ARGV[7], ARGV[8], tonumber(ARGV[9]), ARGV[10]
local cur = redis.call('GET', dkey)
local live = false
if cur then
  local st = redis.call('HGET', B..'stat', cur)
  if (st == 'scheduled' or st == 'queued') and not redis.call('HGET', B..'owner', cur)
      and tonumber(redis.call('HGET', B..'tries', cur) or '0') == 0 then
    live = redis.call('GET', B..'job:'..cur)
  end
end
if mode == 'replace' then
  if not live or cur ~= expected or live ~= ARGV[4] then return {0, live} end
elseif live and cur ~= expected then
  return {0, live}
else
  local known = redis.call('GET', B..'job:'..id)
  if known then return {2, known} end
  redis.call('HSET', B..'tries', id, ARGV[11])
end
local soonest = earliest(B)
redis.call('SET', B..'job:'..id, record)
move(B, id, status, seq)
unready(B, id)
redis.call('HSET', B..'jmeta', id, ARGV[12])
redis.call('ZADD', B..'due', run_at, id)
redis.call('SET', dkey, id, 'PX', ARGV[13])
if soonest == nil or run_at < soonest then redis.call('PUBLISH', B..'work', '') end
return {1}
"""
)
Call = Callable[[str, list[Any]], Awaitable[Any]]


async def debounce(call: Call, job: Job, replace: Callable[[Job], Job | None]) -> tuple[Job, bool]:
    """Store.debounce on Redis: the window looked at and written in one script, again while another process got
    there first (each time with the job it left waiting)."""
    expected: Job | None = None
    expected_record = b""
    for _ in range(100):
        replacement = replace(expected) if expected is not None else None
        stored = replacement or job
        life = max(1, round((stored.run_at - job.created_at + KEEP_S) * 1000))
        args: list[Any] = [
            job.debounce,
            expected.id if expected else "",
            expected_record,
            "replace" if replacement else "new",
        ]
        args += [stored.id, encode_job(stored), stored.status.value, repr(stored.run_at), stored.seq, stored.attempts]
        args += [meta_of(stored), life]
        answer = await call("debounce", args)
        if answer[0] == 1:
            return stored, replacement is not None
        if answer[0] == 2:
            return decode_job(answer[1]), False
        expected_record = answer[1] if len(answer) > 1 else b""
        expected = decode_job(expected_record) if expected_record else None
    raise StoreUnavailable(f"debounce key {job.debounce}: the window changed 100 times in a row; try again")


def meta_of(job: Job) -> str:
    """Where a waiting job goes once due (redis.py's `_meta`): its priority, acceptance order and key."""
    return f"{job.priority}|{job.seq:020d}|{job.key or ''}"

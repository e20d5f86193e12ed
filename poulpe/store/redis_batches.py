"""Chains and batches on Redis (SPEC 10.3): a final state and its children saved by one script; a batch and its jobs
stored by one script, its counters moved in SAVE (redis_scripts.count_batch), so a batch ends exactly once whichever
process writes its last job's final state."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from poulpe.batch_record import Batch, extras, with_extras
from poulpe.errors import NotHeld
from poulpe.job import Job, decode_job
from poulpe.store.redis_actions import RedisActions
from poulpe.store.redis_args import ARGS
from poulpe.store.redis_scripts import ADD_BODY, MOVE

# ARGV: base, batch id, extras JSON, total, created_at, then ADD's groups of 10 (the jobs). Returns {0} when stored,
# {1} when the batch id is known (nothing written), {2, id} when a job id is known (nothing written).
ADD_BATCH = (
    MOVE
    + "local function add_jobs(ARGV)\n"
    + ADD_BODY
    + """end
local B, id = ARGV[1], ARGV[2]
local bk = B..'batch:'..id
if redis.call('EXISTS', bk) == 1 then return {1} end
for i = 6, #ARGV, 10 do
  if redis.call('EXISTS', B..'job:'..ARGV[i]) == 1 then return {2, ARGV[i]} end
end
redis.call('HSET', bk, 'record', ARGV[3], 'total', ARGV[4], 'pending', ARGV[4], 'succeeded', 0, 'dead', 0,
  'cancelled', 0, 'created_at', ARGV[5])
local rest = {B}
for i = 6, #ARGV do rest[#rest + 1] = ARGV[i] end
add_jobs(rest)
return {0}
"""
)

# ARGV: base, now, held until, limit. Batches whose completion is owed and free: held until then by the caller.
OWED = """
local B = ARGV[1]
local ids = redis.call('ZRANGEBYSCORE', B..'batches_done', '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[4]))
for _, id in ipairs(ids) do redis.call('ZADD', B..'batches_done', ARGV[3], id) end
return ids
"""

BATCH_SCRIPTS = {
    "add_batch": ADD_BATCH,
    "owed_batches": ARGS + OWED,
    "get_batch": ARGS + "return redis.call('HGETALL', ARGV[1]..'batch:'..ARGV[2])",
    "batch_announced": ARGS + "return redis.call('ZREM', ARGV[1]..'batches_done', ARGV[2])",
}
_NUMBERS = ("total", "pending", "succeeded", "dead", "cancelled")


class RedisBatches(RedisActions):
    """The store contract's chain, batch and (through RedisActions) bulk action methods on Redis."""

    base: str

    async def _script(self, script: str, args: list[Any]) -> Any:
        raise NotImplementedError

    @staticmethod
    def _add_args(jobs: Sequence[Job]) -> list[Any]:
        raise NotImplementedError

    def _save_args(self, job: Job, *, token: str | None = None, held: bool = False) -> list[Any]:
        raise NotImplementedError

    async def save_final(self, job: Job, children: Sequence[Job]) -> list[tuple[Job, bool]]:
        """A final state and its children (SPEC 10.3) in one script (SAVE_FINAL)."""
        with self._timed("save_final"):
            saved, *known = await self._script("save_final", [*self._save_args(job), *self._add_args(children)])
            if not saved:
                raise NotHeld(f"job {job.id} is held by another poulpe process")
            return added(children, known)

    async def add_batch(self, batch: Batch, jobs: Sequence[Job]) -> Batch | str | None:
        with self._timed("add_batch"):
            args = [batch.id, extras(batch), batch.total, repr(batch.created_at), *self._add_args(jobs)]
            answer = await self._script("add_batch", args)
            if answer[0] == 1:
                return await self.get_batch(batch.id)
            return _text(answer[1]) if answer[0] == 2 else None

    async def get_batch(self, batch_id: str) -> Batch | None:
        with self._timed("get_batch"):
            found = await self._script("get_batch", [batch_id])
            if not found:
                return None
            fields = {_text(found[i]): found[i + 1] for i in range(0, len(found), 2)}
            finished = fields.get("finished_at")
            total, pending, succeeded, dead, cancelled = (int(fields.get(name, 0)) for name in _NUMBERS)
            batch = Batch(
                id=batch_id,
                total=total,
                pending=pending,
                succeeded=succeeded,
                dead=dead,
                cancelled=cancelled,
                created_at=float(fields["created_at"]),
                finished_at=float(finished) if finished not in (None, b"", "") else None,
            )
            return with_extras(batch, fields["record"])

    async def owed_batches(self, now: float, lease: float, limit: int = 20) -> list[str]:
        with self._timed("owed_batches"):
            ids = await self._script("owed_batches", [repr(now), repr(now + lease), limit])
            return [_text(i) for i in ids]

    async def batch_announced(self, batch_id: str) -> None:
        with self._timed("batch_announced"):
            await self._script("batch_announced", [batch_id])


def added(jobs: Sequence[Job], known: Sequence[Any]) -> list[tuple[Job, bool]]:
    """ADD's answer: for each job, (it, False) when stored now, or (the stored job, True) when its id was known."""
    return [(job, False) if k == 0 else (decode_job(k), True) for job, k in zip(jobs, known, strict=True)]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

"""The Redis store: every job and index in Redis, so several poulpe processes share one workload.

Writes leave through one pipeline (Redis's group commit), sent again when a reply is lost; multi-key steps are
Lua scripts (redis_link.py, redis_scripts.py). Reads: redis_reads.py.

Claiming is shared: a due job sits in the namespace's `due` set until one process claims it with a lease, which
it renews while it holds the job. A lease that runs out means its process died: the next claim, by any process,
puts the job back as due. Processes learn of new work, finished jobs and cancellations by pub/sub.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import msgspec

from poulpe.dispatch.order import in_order
from poulpe.errors import NotHeld, StoreUnavailable
from poulpe.job import FINAL, CallbackDelivery, Job, Method, Status, decode_job, encode_job
from poulpe.keys import KeyLimits
from poulpe.store import redis_windows
from poulpe.store.base import Claimed, Store
from poulpe.store.redis_batches import RedisBatches, added
from poulpe.store.redis_claim import count_unrecorded
from poulpe.store.redis_link import RedisLink
from poulpe.store.redis_reads import RedisReads
from poulpe.store.redis_windows import meta_of, unique_args

log = logging.getLogger(__name__)
_limits_decoder = msgspec.json.Decoder(KeyLimits)
_DAYS: dict[int, str] = {}  # day number since the epoch -> its text
PATIENCE_S = 5.0  # how long a write whose reply was lost is sent again before its outcome is reported unknown


class RedisStore(RedisReads, RedisBatches, Store):  # RedisReads holds RedisLink, RedisBatches RedisActions
    kind = "redis"
    shared = True

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "poulpe:",
        owner: str | None = None,
        patience: float | None = None,
        password: str | None = None,
        replicas: int = 0,
    ) -> None:
        patience = PATIENCE_S if patience is None else patience
        RedisLink.__init__(self, url, prefix=prefix, patience=patience, password=password, replicas=replicas)
        self.owner = owner or f"poulpe-{secrets.token_hex(6)}"  # this process's name on its leases

    def shared_schedule(self) -> RedisStore:
        return self

    @staticmethod
    def _add_args(jobs: Sequence[Job]) -> list[Any]:
        args: list[Any] = []
        for job in jobs:  # ADD's groups of 10
            args += [job.id, encode_job(job).decode(), job.status.value, repr(job.run_at), str(job.seq), _place(job)]
            args += [str(job.attempts), meta_of(job)]
            args += unique_args(job)
        return args

    # --- writes ----------------------------------------------------------------------------------------------
    async def add(self, jobs: Sequence[Job]) -> list[tuple[Job, bool]]:
        with self._timed("add"):
            known = await self._script("add", self._add_args(jobs))
            return added(jobs, known)

    def _save_args(self, job: Job, *, token: str | None = None, held: bool = False) -> list[Any]:
        day = ""
        if job.finished_at is not None and job.status in (Status.SUCCEEDED, Status.DEAD):
            day = _day(job.finished_at) + (":succeeded" if job.status is Status.SUCCEEDED else ":failed")
        finished = repr(job.finished_at) if job.finished_at is not None else ""
        return [
            job.id,
            encode_job(job).decode(),  # text: Redis reads no MessagePack `bin`
            job.status.value,
            repr(job.run_at),
            str(job.seq),
            token or self.owner,
            finished,
            day,
            _place(job),
            "1" if held else "0",
            repr(job.lease_until) if job.status is Status.RUNNING and job.lease_until is not None else "",
            str(job.attempts),
            meta_of(job),
            job.batch or "",
        ]

    async def save(self, job: Job) -> None:
        with self._timed("save"):
            if not await self._script("save", self._save_args(job)):
                raise NotHeld(f"job {job.id} is held by another poulpe process")

    async def save_many(self, jobs: Sequence[Job]) -> list[BaseException | None]:
        """The saves go in the write pipeline together, awaited in turn: no task per job (Store.save_many's)."""
        with self._timed("save_many"):
            try:
                waits = [self._call("save", self._save_args(job)) for job in jobs]
            except StoreUnavailable as exc:  # closed: nothing was issued
                return [exc] * len(jobs)
            out: list[BaseException | None] = []
            for job, wait in zip(jobs, waits, strict=True):
                try:
                    saved = await wait  # type: ignore[misc]
                except Exception as exc:
                    out.append(exc)
                    continue
                out.append(None if saved else NotHeld(f"job {job.id} is held by another poulpe process"))
            return out

    def save_soon(self, job: Job) -> None:
        self._call("save", self._save_args(job), wait=False)

    async def debounce(self, job: Job, replace: Callable[[Job], Job | None]) -> tuple[Job, bool]:
        with self._timed("debounce"):
            return await redis_windows.debounce(self._script, job, replace)

    async def delete(self, job_id: str) -> bool:
        with self._timed("delete"):
            return bool(await self._script("delete", [job_id]))

    async def purge(self, finished_before: float) -> int:
        with self._timed("purge"):
            total = 0
            while True:
                purged = int(await self._script("purge", [repr(finished_before), 1000]))
                total += purged
                if purged < 1000:
                    return total

    # --- QUEUE jobs and external workers ----------------------------------------------------------------------
    async def lease_queue(self, kind: str, n: int, holder: str, until: float, now: float) -> list[Job]:
        """Reserve atomically (LEASE_QUEUE), then record each attempt with a save that makes the worker the holder."""
        with self._timed("lease_queue"):
            records = await self._script("lease_queue", [kind, repr(now), n, repr(until), holder])
            jobs = in_order([decode_job(r) for r in records])
            for job in jobs:
                job.begin_attempt(None, holder, now)
                job.lease_holder, job.lease_until = holder, until
            # one pipeline for all of them; a reservation whose save fails is put back when its lease ends
            await asyncio.gather(
                *(self._script("save", self._save_args(job, token=_external(holder, job.attempts))) for job in jobs)
            )
            return jobs

    async def save_if_held(self, job: Job, holder: str, children: Sequence[Job] = ()) -> bool:
        with self._timed("save_if_held"):
            args = self._save_args(job, token=_external(holder, job.attempts), held=True)
            if children:
                saved, *_ = await self._script("save_final", [*args, *self._add_args(children)])
                return bool(saved)
            return bool(await self._script("save", args))

    async def expired_leases(self, now: float, limit: int) -> list[Job]:
        with self._timed("expired_leases"):
            records = await self._script("expired", [repr(now), limit])
            return [decode_job(r) for r in records]

    async def next_due(self, kind: str) -> float | None:
        with self._timed("next_due"):
            async with self._reachable():
                first = await self.redis.zrange(self.base + "q:" + kind, 0, 0, withscores=True)
            return float(first[0][1]) if first else None

    async def next_lease_end(self) -> float | None:
        with self._timed("next_lease_end"):
            async with self._reachable():
                first = await self.redis.zrange(self.base + "xlease", 0, 0, withscores=True)
            return float(first[0][1]) if first else None

    async def set_callback_delivery(self, job_id: str, delivery: CallbackDelivery) -> bool:
        """Read, change the one field, and compare-and-set: a concurrent write makes it read again."""
        with self._timed("set_callback_delivery"):
            for _ in range(10):
                async with self._reachable():
                    record = await self.redis.get(self.base + "job:" + job_id)
                if record is None:
                    return False
                job = decode_job(record)
                if not job.final:
                    return False
                job.callback_delivery = delivery
                if await self._script("swap", [job_id, record, encode_job(job)]):
                    return True
            return False

    # --- claiming (shared by every process on this namespace) -------------------------------------------------
    async def claim(
        self,
        n: int,
        lease: float,
        now: float | None = None,
        *,
        recheck: Sequence[str] | None = None,
        defaults: KeyLimits | None = None,
    ) -> Claimed:
        """Lease up to `n` due jobs to this process, by the dispatch rule (priority, key turns, due time, acceptance
        order; keys' pauses and limits counted across every process; `defaults` for keys without their own).

        A claim is never sent twice by the client: when its answer is lost (Redis restarted), the jobs it leased
        are unknown here. Call again with `recheck` = the ids this process holds, and the others go back.

        A job comes back `running` when an attempt of it began elsewhere (its process stopped): the caller closes
        that attempt as interrupted. An attempt that may have begun without its `running` mark reaching Redis is
        closed here (the claim counted it), so the next attempt's number is always new.
        """
        now = time.time() if now is None else now
        d = defaults or KeyLimits()
        args = [repr(now), n, repr(now + lease), self.owner, "1" if recheck is not None else "0"]
        args += [d.parallelism or 0, repr(d.rate or 0.0), repr(d.period), *(recheck or ())]
        # Straight to Redis, not behind the write pipeline: a worker waiting for work should not wait for writes.
        records, due, lease_end, token, passed, tries = await self._direct("claim", args)
        jobs = [decode_job(r) for r in records]  # in the order the rule took them
        for job, attempt in zip(jobs, tries, strict=True):
            count_unrecorded(job, int(attempt) - 1, now)
        held = {_text(passed[i]): _text(passed[i + 1]) for i in range(0, len(passed), 2)}
        return Claimed(
            jobs,
            float(due) if due else None,
            float(lease_end) if lease_end else None,
            float(token) if token else None,
            held,
        )

    async def key_counts(self, key: str, period: float) -> tuple[int, int, int]:
        """(waiting, running, started in the last `period` s) of a key, counted across every process."""
        async with self._reachable():
            pipe = self.redis.pipeline(transaction=False)
            pipe.hget(self.base + "kready", key)
            pipe.hget(self.base + "krun", key)
            pipe.zcount(self.base + "ks:" + key, time.time() - period, "+inf")
            waiting, running, started = await pipe.execute()
        return int(waiting or 0), int(running or 0), int(started or 0)

    async def busy_keys(self) -> dict[str, tuple[int, int]]:
        """Keys with due jobs waiting or jobs leased now: (waiting, leased) of each."""
        async with self._reachable():
            waiting = {_text(k): int(v) for k, v in (await self.redis.hgetall(self.base + "kready")).items()}
            running = {_text(k): int(v) for k, v in (await self.redis.hgetall(self.base + "krun")).items()}
        return {k: (waiting.get(k, 0), running.get(k, 0)) for k in {*waiting, *running}}

    async def renew(self, ids: Iterable[str], lease: float) -> list[str]:
        """Extend this process's leases on `ids`; returns the ids whose lease another process took."""
        ids = list(ids)
        if not ids:
            return []
        lost = await self._script("renew", [repr(time.time() + lease), self.owner, *ids])
        return [_text(i) for i in lost]

    async def request_cancel(self, job_id: str) -> None:
        """Ask whichever process runs the job to cancel it after its attempt."""
        async with self._reachable():
            await self.redis.publish(self.base + "cancel", job_id)

    async def delayed(self, cap: int) -> list[str]:
        """The next `cap` jobs waiting for their time, soonest first (sys_info)."""
        async with self._reachable():
            ids = await self.redis.zrange(self._due, 0, cap - 1)
        return [_text(i) for i in ids]

    # --- keys and the deployment-wide pause (a hash each; a change is published on `limits`) ---------------------
    async def controls(self) -> tuple[dict[str, KeyLimits], bool]:
        with self._timed("controls"):
            async with self._reachable():
                own = await self.redis.hgetall(self.base + "keys")
                paused = await self.redis.hget(self.base + "flags", "paused")
            limits = {_text(k): _limits_decoder.decode(v) for k, v in own.items()}
            return limits, paused in (b"1", "1")

    async def set_key(self, key: str, limits: KeyLimits | None) -> None:
        with self._timed("set_key"):
            async with self._reachable():
                if limits is None or limits.empty:
                    await self.redis.hdel(self.base + "keys", key)
                else:
                    await self.redis.hset(self.base + "keys", key, msgspec.json.encode(limits))
                await self.redis.publish(self.base + "limits", key)

    async def set_paused(self, paused: bool) -> None:
        with self._timed("set_paused"):
            async with self._reachable():
                await self.redis.hset(self.base + "flags", "paused", "1" if paused else "0")
                await self.redis.publish(self.base + "limits", "")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _day(at: float) -> str:
    """The UTC day of a time, YYYY-MM-DD (the day's totals it counts in), made once per day."""
    day = int(at // 86400)
    text = _DAYS.get(day)
    if text is None:
        text = _DAYS[day] = time.strftime("%Y-%m-%d", time.gmtime(day * 86400))
    return text


def _place(job: Job) -> str:
    """The waiting set a job belongs to: `due` (poulpe's workers), `q:<type>` (external workers), or none."""
    if job.status in FINAL:
        return ""
    return "q:" + job.name if job.method is Method.QUEUE else "due"


def _external(holder: str, attempt: int) -> str:
    """The owner value of an external worker's lease: the worker and the attempt it holds."""
    return f"x:{holder}:{attempt}"

"""`--partitions N`: one deployment spread over N Redis namespaces, `{poulpe:0}:` … `{poulpe:N-1}:`, each one hash
slot, so that on a Redis Cluster they land on different shards (docs/scale.md).

A job lives in the partition of its id (a hash of it), so a duplicate id is found in one place. Jobs with a key
and jobs for external workers (QUEUE) are the exception: they live in partition 0, the coordinating partition, where
keys' limits are counted (so parallelism and rates stay global) and external workers lease in one due order; so do
jobs with a unique or debounce window (SPEC 10.2), whose windows are found there whatever the job's id; a
lookup by id tries the id's partition, then partition 0. The pause is written
to every partition (each claim reads its own). Every partition is a RedisStore of its own (its own primary, its own
fail-over); this class only routes, and claims from the partitions in turns.
"""

from __future__ import annotations

import asyncio
import heapq
import random
import zlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Unpack

from poulpe.action_record import Action, Progress
from poulpe.batch_record import Batch
from poulpe.errors import OutcomeUnknown
from poulpe.job import CallbackDelivery, Job, Method, Status
from poulpe.keys import KeyLimits
from poulpe.store.base import Claimed, JobQuery, Page, Pending, Store
from poulpe.store.redis import RedisStore


class PartitionedStore(Store):
    kind = "redis"
    shared = True

    def __init__(self, url: str, *, partitions: int, prefix: str = "poulpe:", **options: Any) -> None:
        name = prefix.strip("{}:")
        self.parts = [RedisStore(url, prefix=f"{{{name}:{n}}}:", **options) for n in range(partitions)]
        self.owner = self.parts[0].owner
        self.base = f"{{{name}:0..{partitions - 1}}}:"
        self.coordinator = self.parts[0]  # keys, their limits and the pause are counted and read here
        self._turn = random.randrange(partitions)  # processes start their turns on different partitions
        self._where: dict[str, RedisStore] = {}  # jobs this process claimed, and where

    def shared_schedule(self) -> PartitionedStore:
        return self

    def of(self, job_id: str) -> RedisStore:
        return self.parts[zlib.crc32(job_id.encode()) % len(self.parts)]

    def _for(self, job: Job) -> RedisStore:
        if job.key or job.method is Method.QUEUE or job.unique is not None or job.debounce is not None:
            return self.coordinator  # windows (SPEC 10.2) are looked at in one place too
        if job.then or job.on_failure or job.parent or job.batch:
            return self.coordinator  # a final state and its children, a batch and its jobs: one script each
        return self._where.get(job.id) or self.of(job.id)

    async def debounce(self, job: Job, replace: Callable[[Job], Job | None]) -> tuple[Job, bool]:
        with self._timed("debounce"):
            return await self.coordinator.debounce(job, replace)

    async def _each(self, call: Callable[[RedisStore], Any]) -> list[Any]:
        return list(await asyncio.gather(*(call(part) for part in self.parts)))

    def _turns(self) -> list[RedisStore]:
        start, self._turn = self._turn, (self._turn + 1) % len(self.parts)
        return self.parts[start:] + self.parts[:start]

    # --- lifecycle and health ----------------------------------------------------------------------------------
    async def open(self) -> None:
        await self._each(lambda p: p.open())

    async def close(self) -> None:
        await self._each(lambda p: p.close())

    async def ping(self) -> bool:
        with self._timed("ping"):
            return all(await self._each(lambda p: p.ping()))

    def write_fault(self) -> str | None:
        return next((fault for p in self.parts if (fault := p.write_fault()) is not None), None)

    # --- writes ------------------------------------------------------------------------------------------------
    async def add(self, jobs: Sequence[Job]) -> list[tuple[Job, bool]]:
        with self._timed("add"):
            groups: dict[int, list[int]] = {}
            for i, job in enumerate(jobs):
                groups.setdefault(self.parts.index(self._for(job)), []).append(i)
            answers = await asyncio.gather(
                *(self.parts[p].add([jobs[i] for i in idx]) for p, idx in groups.items()), return_exceptions=True
            )
            failed = [a for a in answers if isinstance(a, BaseException)]
            if failed:
                if len(failed) == len(answers) and not any(isinstance(a, OutcomeUnknown) for a in failed):
                    raise failed[0]  # nothing was stored anywhere
                message = "a partition of the job store (redis) failed while others stored their jobs"
                raise OutcomeUnknown(message, [job.id for job in jobs]) from failed[0]
            out: list[tuple[Job, bool] | None] = [None] * len(jobs)
            for idx, answer in zip(groups.values(), answers, strict=True):
                assert not isinstance(answer, BaseException)
                for i, pair in zip(idx, answer, strict=True):
                    out[i] = pair
            return [pair for pair in out if pair is not None]

    async def save(self, job: Job) -> None:
        with self._timed("save"):
            await self._for(job).save(job)
            if job.status is not Status.RUNNING:
                self._where.pop(job.id, None)

    def save_soon(self, job: Job) -> None:
        self._for(job).save_soon(job)
        if job.status is not Status.RUNNING:
            self._where.pop(job.id, None)

    async def delete(self, job_id: str) -> bool:
        with self._timed("delete"):
            part = await self._holder(job_id)
            return part is not None and await part.delete(job_id)

    async def purge(self, finished_before: float) -> int:
        with self._timed("purge"):
            return sum(await self._each(lambda p: p.purge(finished_before)))

    # --- reads -------------------------------------------------------------------------------------------------
    async def _holder(self, job_id: str) -> RedisStore | None:
        for part in dict.fromkeys((self.of(job_id), self.coordinator)):
            if await part.get(job_id) is not None:
                return part
        return None

    async def get(self, job_id: str) -> Job | None:
        with self._timed("get"):
            for part in dict.fromkeys((self.of(job_id), self.coordinator)):
                job = await part.get(job_id)
                if job is not None:
                    return job
            return None

    async def get_many(self, ids: Sequence[str]) -> list[Job]:
        with self._timed("get_many"):
            groups: dict[int, list[str]] = {}
            for job_id in ids:
                groups.setdefault(self.parts.index(self.of(job_id)), []).append(job_id)
            answers = await asyncio.gather(*(self.parts[p].get_many(g) for p, g in groups.items()))
            found = {job.id: job for jobs in answers for job in jobs}
            missing = [i for i in ids if i not in found]
            if missing:
                found.update((job.id, job) for job in await self.coordinator.get_many(missing))
            return [found[i] for i in ids if i in found]

    async def pending(self) -> list[Pending]:
        with self._timed("pending"):
            return [p for found in await self._each(lambda p: p.pending()) for p in found]

    async def list_jobs(self, **query: Unpack[JobQuery]) -> Page:
        """Newest first across partitions: each partition's first page*size, merged by acceptance order."""
        with self._timed("list_jobs"):
            page, size = query.get("page", 1), query.get("size", 50)
            wide: JobQuery = {**query, "page": 1, "size": page * size}
            pages = await self._each(lambda p: p.list_jobs(**wide))
            merged = heapq.merge(*(p.jobs for p in pages), key=lambda job: -job.seq)
            jobs = list(merged)[(page - 1) * size : page * size]
            return Page(jobs, sum(p.total for p in pages))

    async def ids(self, status: Status, limit: int) -> list[str]:
        with self._timed("ids"):
            if limit <= 0:
                return []
            found = await self._each(lambda p: p.scored_ids(status, limit))
            return [i for _, i in heapq.merge(*found, key=lambda pair: -pair[0])][:limit]

    async def counts(self) -> dict[str, int]:
        with self._timed("counts"):
            total: dict[str, int] = {}
            for counted in await self._each(lambda p: p.counts()):
                for status, n in counted.items():
                    total[status] = total.get(status, 0) + n
            return total

    async def prefix_counts(self, prefix: str, statuses: Iterable[Status]) -> dict[str, int]:
        with self._timed("prefix_counts"):
            wanted = list(statuses)
            total: dict[str, int] = {}
            for counted in await self._each(lambda p: p.prefix_counts(prefix, wanted)):
                for status, n in counted.items():
                    total[status] = total.get(status, 0) + n
            return total

    async def day_counts(self, day: str) -> dict[str, int]:
        with self._timed("day_counts"):
            total = {"succeeded": 0, "failed": 0}
            for counted in await self._each(lambda p: p.day_counts(day)):
                for column in total:
                    total[column] += counted[column]
            return total

    async def max_seq(self) -> int:
        with self._timed("max_seq"):
            return int(max(await self._each(lambda p: p.max_seq())))

    # --- QUEUE jobs and external workers: the coordinating partition, so their due order is one ------------------
    async def lease_queue(self, kind: str, n: int, holder: str, until: float, now: float) -> list[Job]:
        with self._timed("lease_queue"):
            return await self.coordinator.lease_queue(kind, n, holder, until, now)

    async def save_if_held(self, job: Job, holder: str, children: Sequence[Job] = ()) -> bool:
        with self._timed("save_if_held"):
            return await self.coordinator.save_if_held(job, holder, children)

    async def expired_leases(self, now: float, limit: int) -> list[Job]:
        with self._timed("expired_leases"):
            return await self.coordinator.expired_leases(now, limit)

    async def next_lease_end(self) -> float | None:
        with self._timed("next_lease_end"):
            return await self.coordinator.next_lease_end()

    async def next_due(self, kind: str) -> float | None:
        with self._timed("next_due"):
            return await self.coordinator.next_due(kind)

    async def set_callback_delivery(self, job_id: str, delivery: CallbackDelivery) -> bool:
        with self._timed("set_callback_delivery"):
            part = await self._holder(job_id)
            return part is not None and await part.set_callback_delivery(job_id, delivery)

    # --- chains, batches and bulk actions (SPEC 10.3, 10.4): the coordinating partition -----------------------------
    async def save_final(self, job: Job, children: Sequence[Job]) -> list[tuple[Job, bool]]:
        with self._timed("save_final"):
            self._where.pop(job.id, None)
            return await self.coordinator.save_final(job, children)

    async def add_batch(self, batch: Batch, jobs: Sequence[Job]) -> Batch | str | None:
        with self._timed("add_batch"):
            return await self.coordinator.add_batch(batch, jobs)

    async def get_batch(self, batch_id: str) -> Batch | None:
        with self._timed("get_batch"):
            return await self.coordinator.get_batch(batch_id)

    async def owed_batches(self, now: float, lease: float, limit: int = 20) -> list[str]:
        with self._timed("owed_batches"):
            return await self.coordinator.owed_batches(now, lease, limit)

    async def batch_announced(self, batch_id: str) -> None:
        with self._timed("batch_announced"):
            await self.coordinator.batch_announced(batch_id)

    async def find_ids(self, status: Status | None, match: Callable[[Job], bool]) -> list[str]:
        with self._timed("find_ids"):
            return [i for found in await self._each(lambda p: p.find_ids(status, match)) for i in found]

    async def add_action(self, action: Action, ids: Sequence[str], hold_until: float) -> None:
        with self._timed("add_action"):
            await self.coordinator.add_action(action, ids, hold_until)

    async def get_action(self, action_id: str) -> Action | None:
        with self._timed("get_action"):
            return await self.coordinator.get_action(action_id)

    async def action_ids(self, action_id: str) -> list[str]:
        with self._timed("action_ids"):
            return await self.coordinator.action_ids(action_id)

    async def action_progress(self, action_id: str, progress: Progress, hold_until: float) -> None:
        with self._timed("action_progress"):
            await self.coordinator.action_progress(action_id, progress, hold_until)

    async def open_actions(self, now: float, hold: float) -> list[str]:
        with self._timed("open_actions"):
            return await self.coordinator.open_actions(now, hold)

    # --- keys and the pause: the coordinating partition (the pause in every partition) -----------------------------
    async def controls(self) -> tuple[dict[str, KeyLimits], bool]:
        with self._timed("controls"):
            return await self.coordinator.controls()

    async def set_key(self, key: str, limits: KeyLimits | None) -> None:
        with self._timed("set_key"):
            await self.coordinator.set_key(key, limits)

    async def set_paused(self, paused: bool) -> None:
        with self._timed("set_paused"):
            await self._each(lambda p: p.set_paused(paused))

    # --- the shared schedule -------------------------------------------------------------------------------------
    async def claim(
        self,
        n: int,
        lease: float,
        now: float | None = None,
        *,
        recheck: Sequence[str] | None = None,
        defaults: KeyLimits | None = None,
    ) -> Claimed:
        """Up to `n` jobs from the partitions in turns: one with nothing due passes the turn to the next, so no
        partition starves and no process waits while another partition has due jobs."""
        jobs: list[Job] = []
        dues: list[float | None] = []
        ends: list[float | None] = []
        tokens: list[float | None] = []
        held: dict[str, str] = {}
        for part in self._turns():
            if len(jobs) >= n:
                break
            mine = None if recheck is None else [i for i in recheck if self._where.get(i, self.of(i)) is part]
            claimed = await part.claim(n - len(jobs), lease, now, recheck=mine, defaults=defaults)
            for job in claimed.jobs:
                self._where[job.id] = part
            jobs += claimed.jobs
            dues.append(claimed.next_due)
            ends.append(claimed.next_lease_end)
            tokens.append(claimed.next_token)
            held.update(claimed.held)
        return Claimed(jobs, _soonest(dues), _soonest(ends), _soonest(tokens), held)

    async def key_counts(self, key: str, period: float) -> tuple[int, int, int]:
        return await self.coordinator.key_counts(key, period)

    async def busy_keys(self) -> dict[str, tuple[int, int]]:
        return await self.coordinator.busy_keys()

    async def renew(self, ids: Iterable[str], lease: float) -> list[str]:
        groups: dict[int, list[str]] = {}
        for job_id in ids:
            groups.setdefault(self.parts.index(self._where.get(job_id) or self.of(job_id)), []).append(job_id)
        lost = await asyncio.gather(*(self.parts[p].renew(g, lease) for p, g in groups.items()))
        return [i for found in lost for i in found]

    async def listen(self, on_message: Callable[[str, str], None], on_connected: Callable[[], None]) -> None:
        await self._each(lambda p: p.listen(on_message, on_connected))

    async def request_cancel(self, job_id: str) -> None:
        await self.coordinator.request_cancel(job_id)  # every process hears every partition's channels

    async def delayed(self, cap: int) -> list[str]:
        return [i for found in await self._each(lambda p: p.delayed(cap)) for i in found][:cap]


def _soonest(times: Iterable[float | None]) -> float | None:
    return min((t for t in times if t is not None), default=None)

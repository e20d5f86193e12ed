"""LocalFeed: the embedded store's schedule, owned by this process alone.

A job due now is ready at once when there is room (`Ready.admit`: the manager hands it over itself, so it never
passes here). Later ones wait in the in-memory heap (timer.py); a job that comes due is read from the store and put
in the ready structure. A restart rebuilds the heap from the store: scheduled jobs keep their time, queued ones run,
running ones (their attempt was cut by the stop) run again.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
from collections.abc import Callable

from poulpe.dispatch.order import rank, rank_at
from poulpe.dispatch.ready import KEY_READY_CAP, READY_CAP, Ready, key_of
from poulpe.dispatch.timer import Entry, Timer
from poulpe.errors import Unavailable
from poulpe.job import INTERRUPTED, WAITING, Job, Method, Status
from poulpe.store.base import Store

log = logging.getLogger("poulpe.jobs")


class LocalFeed:
    owns_schedule = True  # a job due now may go straight to the ready structure (`Ready.admit`)

    def __init__(self, ready: Ready, store: Store, *, clock: Callable[[], float]) -> None:
        self.ready = ready
        self.store = store
        self.clock = clock
        self.timer = Timer(self._on_due, room=self._room, clock=clock)
        # due entries of keys that have KEY_READY_CAP jobs ready already: they go back to the timer as that key's
        # ready jobs start, so one key's backlog never keeps another key's due job out of the ready structure
        self._parked: dict[str, list[Entry]] = {}
        ready.on_key_room = self._unpark
        self._recovery: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Recover from the store: scheduled jobs keep their time, queued ones run, running ones run again. A store
        that cannot be read yet (a full disk) is tried again with backoff; new jobs run meanwhile."""
        self.timer.start()
        try:
            await self._recover()
        except Unavailable as exc:
            log.error("recovery waits for the store: %s", exc.message)
            self._recovery = asyncio.get_running_loop().create_task(self._recover_later(), name="poulpe-recovery")

    async def _recover_later(self) -> None:
        delay = 0.5
        while True:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
            with contextlib.suppress(Unavailable):
                await self._recover()
                return

    async def _recover(self) -> None:
        pending = await self.store.pending()
        interrupted = [p.id for p in pending if p.status is Status.RUNNING]
        for job in await self.store.get_many(interrupted):
            if job.method is Method.QUEUE:
                continue  # held by an external worker under a lease that outlives this process (external.py)
            job.interrupt(INTERRUPTED, self.clock())
            await self.store.save(job)
            log.info("job %s recovered: attempt %d was interrupted, it runs again", job.id, job.attempts)
        now = self.clock()
        self.timer.extend(rank_at(now if p.status is Status.RUNNING else p.run_at, p.seq, p.id) for p in pending)
        log.info("recovered %d unfinished jobs (%d were running)", len(pending), len(interrupted))

    def stop_taking(self) -> None:
        self.timer.stop()
        if self._recovery is not None:
            self._recovery.cancel()

    async def put_back(self, jobs: list[Job]) -> None:
        """Ready jobs left at shutdown: they are stored as queued already, a restart finds them."""

    async def close(self) -> None:
        pass

    def schedule(self, job: Job) -> None:
        """A stored job that waits: ready now if it is due and there is room, parked while its key has
        KEY_READY_CAP jobs ready, else at its time."""
        if job.run_at <= self.clock() and len(self.ready) < READY_CAP:  # due, and room: its key's room asked once
            job.status = Status.QUEUED
            self._make_one_ready(job)
        else:
            self.timer.add(rank(job))

    async def key_counts(self, key: str) -> tuple[int, int, int]:
        """(waiting, running, started in the period): this process runs every job of the embedded store."""
        limits = self.ready.limits
        waiting = self.ready.waiting[key] + len(self._parked.get(key, ()))
        return waiting, limits.running[key], limits.started_in_period(key)

    async def busy_keys(self) -> dict[str, tuple[int, int]]:
        running = self.ready.limits.running
        keys = set(self.ready.waiting) | set(self._parked) | set(running)
        return {k: (self.ready.waiting[k] + len(self._parked.get(k, ())), running[k]) for k in keys}

    def held_reason(self, key: str) -> str | None:
        return self.ready.limits.held(key)

    def _make_one_ready(self, job: Job) -> None:
        if self.ready.key_full(job):
            heapq.heappush(self._parked.setdefault(key_of(job), []), rank(job))
        else:
            self.ready.take(job)

    def _unpark(self, key: str) -> None:
        parked = self._parked.get(key)
        if not parked:
            return
        for _ in range(min(len(parked), KEY_READY_CAP // 2)):
            self.timer.add(heapq.heappop(parked))
        if not parked:
            del self._parked[key]

    def poke(self) -> None:
        self.timer.poke()

    async def request_cancel(self, job_id: str) -> None:
        """A running job no worker here holds (an external worker's): nothing to ask, the cancel answers 409."""

    async def delayed(self, cap: int) -> list[str]:
        return self.timer.peek_ids(cap)

    def _room(self) -> int:
        return max(0, READY_CAP - len(self.ready))

    def _on_due(self, entries: list[Entry]) -> None:
        asyncio.get_running_loop().create_task(self._make_ready(entries))

    async def _make_ready(self, entries: list[Entry]) -> None:
        ready = self.ready
        ids = [job_id for _, _, job_id in entries if not ready.holds(job_id)]
        jobs = {job.id: job for job in await self.store.get_many(ids)}
        now = self.clock()
        for run_at, _, job_id in entries:
            job = jobs.get(job_id)
            # skip what was cancelled, finished or moved to a later time since this entry was made
            if job is None or job.status not in WAITING or job.run_at > max(run_at, now) or ready.holds(job_id):
                continue
            if job.method is Method.QUEUE:
                continue
            if job.status is not Status.QUEUED:
                job.status = Status.QUEUED
                self.store.save_soon(job)
            self._make_one_ready(job)

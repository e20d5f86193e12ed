"""Where a process's workers get their jobs: its own timer heap (embedded store), or claims on a shared Redis.

LocalFeed: this process alone owns the schedule. Due times wait in the in-memory heap (scheduler.py); a restart
rebuilds it from the store.

SharedFeed: the schedule lives in Redis and every process sharing it claims due jobs with a lease, only as many as
it has free workers. It sleeps until the earliest due time or lease end Redis reported, a worker frees up, or a
`work` message says another process stored something due sooner. Nothing polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from poulpe.errors import Unavailable
from poulpe.job import WAITING, Job, Method, Status
from poulpe.scheduler import Entry, Scheduler

if TYPE_CHECKING:
    from poulpe.manager import JobManager
    from poulpe.store.redis import RedisStore

log = logging.getLogger("poulpe.jobs")
READY_CAP = 10_000  # due jobs held in memory at once; the rest wait in the heap until workers catch up
CLAIM_MAX = 500  # jobs leased in one claim at most
INTERRUPTED = "interrupted: poulpe stopped during the attempt"
LEASE_LOST = "interrupted: the poulpe process running it stopped answering (its lease ran out)"


class LocalFeed:
    def __init__(self, manager: JobManager) -> None:
        self.manager = manager
        self.scheduler = Scheduler(self._on_due, room=self._room, clock=manager.clock)
        self._recovery: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Recover from the store: scheduled jobs keep their time, queued ones run, running ones run again. A store
        that cannot be read yet (a full disk) is tried again with backoff; new jobs run meanwhile."""
        self.scheduler.start()
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
        m, store = self.manager, self.manager.store
        pending = await store.pending()
        interrupted = [p.id for p in pending if p.status is Status.RUNNING]
        for job in await store.get_many(interrupted):
            if job.method is Method.QUEUE:
                continue  # held by an external worker under a lease that outlives this process (external.py)
            m.interrupt(job, INTERRUPTED)
            await store.save(job)
            log.info("job %s recovered: attempt %d was interrupted, it runs again", job.id, job.attempts)
        now = m.clock()
        self.scheduler.extend((now if p.status is Status.RUNNING else p.run_at, p.seq, p.id) for p in pending)
        log.info("recovered %d unfinished jobs (%d were running)", len(pending), len(interrupted))

    def stop_taking(self) -> None:
        self.scheduler.stop()
        if self._recovery is not None:
            self._recovery.cancel()

    async def close(self) -> None:
        pass

    def schedule(self, job: Job) -> None:
        """A stored job that waits: run it now if it is due and there is room, else at its time."""
        m = self.manager
        if job.run_at <= m.clock() and m.workers.ready < READY_CAP:
            job.status = Status.QUEUED
            m.take(job)
        else:
            self.scheduler.add(job.run_at, job.seq, job.id)

    def poke(self) -> None:
        self.scheduler.poke()

    async def delayed(self, cap: int) -> list[str]:
        return self.scheduler.peek_ids(cap)

    def _room(self) -> int:
        return max(0, READY_CAP - self.manager.workers.ready)

    def _on_due(self, entries: list[Entry]) -> None:
        asyncio.get_running_loop().create_task(self._make_ready(entries))

    async def _make_ready(self, entries: list[Entry]) -> None:
        m = self.manager
        ids = [job_id for _, _, job_id in entries if not m.holds(job_id)]
        jobs = {job.id: job for job in await m.store.get_many(ids)}
        now = m.clock()
        for run_at, _, job_id in entries:
            job = jobs.get(job_id)
            # skip what was cancelled, finished or moved to a later time since this entry was made
            if job is None or job.status not in WAITING or job.run_at > max(run_at, now) or m.holds(job_id):
                continue
            if job.method is Method.QUEUE:
                continue
            if job.status is not Status.QUEUED:
                job.status = Status.QUEUED
                m.store.save_soon(job)
            m.take(job)


class SharedFeed:
    def __init__(self, manager: JobManager, store: RedisStore, *, lease: float) -> None:
        self.manager = manager
        self.store = store
        self.lease = lease
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._taking = False
        self._unsure = False

    async def start(self) -> None:
        self._taking = True
        self._tasks = [
            asyncio.create_task(self._claim_forever(), name="poulpe-claims"),
            asyncio.create_task(self._renew_forever(), name="poulpe-leases"),
            asyncio.create_task(self.store.listen(self._on_message, self._on_connected), name="poulpe-events"),
        ]
        log.info("sharing redis %s as %s: lease %.0f s", self.store.base, self.store.owner, self.lease)

    def stop_taking(self) -> None:
        """Claim nothing more; leases of what is still running keep being renewed until `close`."""
        self._taking = False
        self._wake.set()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    def schedule(self, job: Job) -> None:
        """The store put the job in the shared `due` set already: look again now, in case it is due."""
        self._wake.set()

    def poke(self) -> None:
        self._wake.set()

    async def delayed(self, cap: int) -> list[str]:
        return await self.store.delayed(cap)

    def _room(self) -> int:
        """Free workers, plus a few jobs held ready so a worker that frees up does not wait for a claim's round trip.

        The few are a quarter of the workers: enough to hide the round trip (measured: about +40 % jobs/s with 64
        workers and quick jobs), few enough that other processes are not starved of slow jobs this one holds.
        """
        workers = self.manager.workers
        return workers.count + max(1, workers.count // 4) - workers.busy - workers.ready

    async def _claim_forever(self) -> None:
        backoff = 0.05
        while self._taking:
            room = min(self._room(), CLAIM_MAX)
            self._wake.clear()
            if room <= 0:
                await self._wake.wait()
                continue
            try:
                recheck = self.manager.held_ids() if self._unsure else None
                claimed = await self.store.claim(room, self.lease, self.manager.clock(), recheck=recheck)
            except Exception as exc:  # Unavailable (Redis away) or anything else: claims must go on
                if not isinstance(exc, Unavailable):
                    log.exception("claiming jobs failed; trying again")
                self._unsure = True  # the claim may have leased jobs whose list never came back
                await self._sleep_until(time.time() + backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            self._unsure = False
            backoff = 0.05
            for job in claimed.jobs:
                self.manager.claimed(job)
            if len(claimed.jobs) == room:
                continue  # there may be more due: claim again as soon as there is room
            times = [t for t in (claimed.next_due, claimed.next_lease_end) if t is not None]
            await self._sleep_until(min(times) if times else None)

    async def _sleep_until(self, when: float | None) -> None:
        timeout = None if when is None else max(0.0, when - time.time())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wake.wait()

    async def _renew_forever(self) -> None:
        """Held jobs keep their lease while this process lives: renewed every third of the lease."""
        while True:
            await asyncio.sleep(self.lease / 3)
            held = self.manager.held_ids()
            try:
                lost = await self.store.renew(held, self.lease)
            except Exception as exc:  # the next renewal tries again, well within the lease
                if not isinstance(exc, Unavailable):
                    log.exception("renewing leases failed")
                continue
            for job_id in lost:
                log.warning("job %s: its lease was taken by another process (this one was too slow)", job_id)

    def _on_message(self, channel: str, payload: str) -> None:
        if channel == "work":
            self._wake.set()
        elif channel == "done":
            self.manager.finished_elsewhere(payload)
        elif channel == "cancel":
            self.manager.cancel_here(payload)
        else:
            self.manager.remote_event(channel, payload)

    def _on_connected(self) -> None:
        """(Re)subscribed: claim again, and look at long-polls whose job may have finished meanwhile."""
        self._wake.set()
        self.manager.recheck_waiters()

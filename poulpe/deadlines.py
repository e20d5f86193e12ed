"""Start deadlines (SPEC 10.2): a job that has not started an attempt by its `deadline` ends `dead`, no attempt made,
its dead letter written.

Two checks, so that no job slips through: a timer for the earliest deadline this process knows (jobs it accepted,
and on start every waiting job with a deadline), which ends a job wherever it waits (its due time, a paused or
rate-limited key, the ready structure); and the check where a worker takes a job, for jobs that reach a worker
first (claimed from another process's intake on Redis, or taken in the instant before the timer fires).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from poulpe.deadjobs import DeadJobs
from poulpe.dispatch.events import Events, JobFinal
from poulpe.dispatch.ready import Ready
from poulpe.dispatch.timer import Entry, Timer
from poulpe.errors import NotHeld, Unavailable
from poulpe.job import DEADLINE_PASSED, WAITING, Job, Status
from poulpe.metrics import Metrics
from poulpe.store.base import Store

log = logging.getLogger("poulpe.jobs")


def watched(job: Job) -> bool:
    """The deadline holds until the first attempt starts."""
    return job.deadline is not None and job.attempts == 0


class Deadlines:
    def __init__(
        self,
        store: Store,
        ready: Ready,
        dead_jobs: DeadJobs,
        events: Events,
        metrics: Metrics,
        *,
        clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.ready = ready
        self.dead_jobs = dead_jobs
        self.events = events
        self.metrics = metrics
        self.clock = clock
        self.timer = Timer(self._on_due, clock=clock)
        self._tasks: set[asyncio.Task[None]] = set()
        self.missed = 0  # jobs ended by their deadline (/metrics)

    def start(self) -> None:
        """Arm the timer, and find in the background the deadlines of jobs a previous run accepted."""
        self.timer.start()
        self._spawn(self._recover())

    def stop(self) -> None:
        self.timer.stop()
        for task in self._tasks:
            task.cancel()

    def watch(self, job: Job) -> None:
        if watched(job):
            assert job.deadline is not None
            self.timer.add((job.deadline, job.seq, job.id))

    def passed(self, job: Job) -> bool:
        """True when a job a worker is about to start is past its deadline (the worker ends it instead: `end`)."""
        return watched(job) and (job.deadline or 0.0) <= self.clock()

    async def end(self, job: Job) -> None:
        """End a job that missed its deadline: dead without an attempt, letter first, then stored and told."""
        job.status, job.error, job.finished_at, job.held = Status.DEAD, DEADLINE_PASSED, self.clock(), None
        self.ready.cancelling.add(job.id)  # no feed takes it while it is written
        try:
            await self.dead_jobs.bury(job)
            try:
                await self.store.save(job)
            except NotHeld:  # another process started it meanwhile: its attempt goes on, the letter goes
                await self.dead_jobs.letter_gone(job.id)
                return
        finally:
            self.ready.cancelling.discard(job.id)
            self.ready.held.pop(job.id, None)
        self.missed += 1
        self.metrics.ended(job.method.value, job.status, None, failed=False)
        log.info("job %s dead attempt=0 error=%r", job.id, job.error)
        self.events.emit(JobFinal(job))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_due(self, entries: list[Entry]) -> None:
        self._spawn(self._expire([job_id for _, _, job_id in entries]))

    async def _expire(self, ids: list[str]) -> None:
        for job_id in ids:
            try:
                job = await self._waiting(job_id)
                if job is not None:
                    await self.end(job)
            except Unavailable as exc:  # the store is away: look again in a second
                log.warning("job %s: its deadline waits for the store: %s", job_id, exc.message)
                self.timer.add((self.clock() + 1.0, 0, job_id))

    async def _waiting(self, job_id: str) -> Job | None:
        """The job if it still waits for its first attempt, taken out of the ready structure; None otherwise."""
        if job_id in self.ready.held:
            return self.ready.discard(job_id)  # None: a worker has it already, and checks the deadline itself
        if self.ready.holds(job_id):
            return None
        job = await self.store.get(job_id)
        if job is None or job.status not in WAITING or not watched(job) or self.ready.holds(job_id):
            return None  # finished, started, or taken into the ready structure during the read (checked there)
        if (job.deadline or 0.0) > self.clock():  # its deadline moved (a retry from the dead letters cleared it)
            self.watch(job)
            return None
        return job

    async def _recover(self) -> None:
        delay = 0.5
        while True:
            try:
                found = await self.store.deadlines()
            except Unavailable:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self.timer.extend(found)
            if found:
                log.info("watching %d start deadlines", len(found))
            return

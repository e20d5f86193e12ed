"""Running dead jobs again with fresh attempts: one (`POST /dead/{id}/retry`) or a bulk action's chunk at once.

A chunk is read in one query, written as one run of updates (one statement and one commit on SQLite, beside the
intake's writes of the same moment), and its letters removed in one hand-off to a thread: what a retried job
costs the event loop and the store's writer is what intake beside the action loses (docs/api.md, bulk actions).
Each job is stored and scheduled first; its letter goes after, now or later (deadjobs.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from poulpe.deadjobs import DeadJobs
from poulpe.errors import Conflict, NotFound, PoulpeError, Unavailable
from poulpe.job import Job, Status
from poulpe.store.base import Store

log = logging.getLogger("poulpe.jobs")


class DeadRetry:
    def __init__(
        self, store: Store, dead_jobs: DeadJobs, schedule: Callable[[list[Job]], None], clock: Callable[[], float]
    ) -> None:
        self.store = store
        self.dead_jobs = dead_jobs
        self.schedule = schedule  # the stored jobs go to the ready structure and their watchers
        self.clock = clock

    def _fresh(self, job: Job, mark: str | None) -> None:
        job.status, job.failures, job.run_at = Status.QUEUED, 0, self.clock()
        job.finished_at, job.error, job.result = None, None, None
        job.deadline = job.first_started_at = None  # fresh attempts: a fresh retry budget, and no start deadline
        job.mark(mark)  # a bulk action's (SPEC 10.4), in the same write

    async def one(self, job_id: str, mark: str | None = None) -> Job:
        """From the store's record, or its letter once the store forgot it."""
        job = await self.dead_jobs.find(job_id)
        if job is None:
            current = await self.store.get(job_id)
            if current is not None and not current.final:
                raise Conflict(f"job {job_id} is {current.status} already")
            raise NotFound(f"no dead job with id {job_id}")
        self._fresh(job, mark)
        await self.store.save(job)
        log.info("job %s queued again from the dead letters attempt=%d", job.id, job.attempts)
        self.schedule([job])
        await self.dead_jobs.letter_gone(job_id)
        return job

    async def many(self, job_ids: Sequence[str], mark: str) -> list[str]:
        """A bulk action's chunk: the jobs marked `mark` already (before a restart) are skipped; answers why each
        job it could not retry was not. Raises Unavailable when the store fails: the chunk is done again."""
        found = {job.id: job for job in await self.store.get_many(job_ids)}
        failed: list[str] = []
        jobs: list[Job] = []
        for job_id in job_ids:
            job = found.get(job_id)
            if job is not None and mark in (job.acted_by or ()):
                continue
            if job is None or job.status is not Status.DEAD:  # forgotten by the store (its letter), or not dead
                try:
                    await self.one(job_id, mark)
                except Unavailable:
                    raise
                except PoulpeError as exc:
                    failed.append(exc.message)
                continue
            self._fresh(job, mark)
            jobs.append(job)
        for error in await self.store.save_many(jobs):
            if error is not None:
                raise error  # the saved ones are marked: skipped when the chunk is done again
        for job in jobs:
            log.info("job %s queued again from the dead letters attempt=%d", job.id, job.attempts)
        self.schedule(jobs)
        await self.dead_jobs.letters_gone([job.id for job in jobs])
        return failed

"""What the routes and intakes read of poulpe besides one job: listings, counts, the dead jobs, the store's health.

JobManager inherits these, so a route asks the manager and never reaches into its store or its dead letters: the
store can change its shape (or move a count to an index) without any route knowing.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any, Unpack

from poulpe.batch_record import Batch
from poulpe.deadjobs import DeadJobs
from poulpe.dispatch.controls import Controls
from poulpe.dispatch.ready import Ready
from poulpe.job import CallbackDelivery, Job, Status
from poulpe.labels import JobFilter
from poulpe.store.base import JobQuery, Page, Store
from poulpe.workers import Workers


class Queries:
    store: Store
    dead_jobs: DeadJobs
    controls: Controls
    ready: Ready
    workers: Workers

    # --- jobs ------------------------------------------------------------------------------------------------
    async def list_jobs(self, **query: Unpack[JobQuery]) -> Page:
        """A page of jobs, newest first (by acceptance order)."""
        return await self.store.list_jobs(**query)

    async def get_many(self, ids: Sequence[str]) -> list[Job]:
        """The stored jobs among `ids` (unknown ones left out), in no particular order."""
        return await self.store.get_many(ids)

    async def counts(self) -> dict[str, int]:
        """Jobs in the store by status."""
        return await self.store.counts()

    async def prefix_counts(self, prefix: str, statuses: Iterable[Status]) -> dict[str, int]:
        """Jobs whose id starts with `prefix` (a tenant's), by status among `statuses`."""
        return await self.store.prefix_counts(prefix, statuses)

    async def day_counts(self, day: str) -> dict[str, int]:
        """Jobs that ended on a UTC day (YYYY-MM-DD), succeeded and failed, as the store keeps them."""
        return await self.store.day_counts(day)

    async def set_callback_delivery(self, job_id: str, delivery: CallbackDelivery) -> bool:
        """Record how a job's callback went (callbacks.py); False when the job is gone."""
        return await self.store.set_callback_delivery(job_id, delivery)

    async def get_batch(self, batch_id: str) -> Batch | None:
        """A batch's counters and what tells its end (SPEC 10.3); None when unknown."""
        return await self.store.get_batch(batch_id)

    # --- dead jobs (deadjobs.py) -----------------------------------------------------------------------------
    async def dead_page(self, *, page: int, size: int) -> tuple[list[dict[str, Any]], int]:
        """A page of dead jobs and how many there are (GET /dead)."""
        items, total = await self.dead_jobs.page(page=page, size=size)
        labelled = {job.id: job.labels for job in await self.store.get_many([item["id"] for item in items])}
        return [{**item, "labels": labelled.get(item["id"])} for item in items], total  # SPEC 10.4: chips

    async def dead_matching(
        self, narrow: JobFilter, *, page: int, size: int, id_prefix: str | None = None
    ) -> tuple[list[dict[str, Any]], int]:
        """A page of the dead jobs the store holds that meet the filters (GET /dead?label=...), newest first."""
        found = await self.store.list_jobs(
            status=Status.DEAD, match=narrow.matches, page=page, size=size, id_prefix=id_prefix
        )
        items = []
        for job in found.jobs:
            day = time.strftime("%Y-%m-%d", time.gmtime(job.finished_at or 0.0))
            items.append({"id": job.id, "day": day, "file": f"{day}/{job.id}.json", "error": job.error,
                          "labels": job.labels})  # fmt: skip
        return items, found.total

    async def dead_job(self, job_id: str) -> Job | None:
        """A dead job, from the store or, once the store forgot it, from its letter."""
        return await self.dead_jobs.find(job_id)

    async def delete_dead(self, job_id: str) -> bool:
        """Forget a dead job and its letter; False when no such job is dead."""
        return await self.dead_jobs.delete(job_id)

    # --- state -----------------------------------------------------------------------------------------------
    async def store_health(self) -> tuple[bool, str | None]:
        """(the store answers, why it takes no writes when it does not: a full disk, Redis refusing writes)."""
        ok = await self.store.ping()
        return ok, None if ok else self.store.write_fault()

    @property
    def store_kind(self) -> str:
        return self.store.kind

    @property
    def paused(self) -> bool:
        """POST /pause holds every job (SPEC 10.1)."""
        return self.controls.limits.paused_all

    @property
    def running(self) -> Sequence[Job | None]:
        """The job each worker runs, by worker number (None: idle)."""
        return self.workers.running

    def held_ids(self) -> list[str]:
        """Ids of the jobs this process holds: waiting for a worker, running or being recorded."""
        return self.ready.held_ids()

    @property
    def ready_count(self) -> int:
        """Jobs due and waiting for a free worker."""
        return len(self.ready)

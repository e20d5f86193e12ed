"""Debounce (SPEC 10.2): submissions with one debounce key replace the job waiting under it until it starts.

The store decides atomically which job a submission replaces (`Store.debounce`); here the engine makes sure the job
it replaces cannot start meanwhile. On the embedded store this process runs every job: a waiting job in the ready
structure is taken out first (and put back, replaced), and one already handed to a worker counts as started. On
Redis a job claimed by a process counts as started, which the store sees itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import msgspec

from poulpe.bursts import replace_pending
from poulpe.dispatch.ready import Ready
from poulpe.job import Job
from poulpe.store.base import Store

log = logging.getLogger("poulpe.jobs")


class Debouncer:
    def __init__(
        self, store: Store, ready: Ready, schedule: Callable[[Job], None], *, clock: Callable[[], float]
    ) -> None:
        self.store = store
        self.ready = ready
        self.schedule = schedule
        self.clock = clock
        self.replaced = 0  # submissions that replaced a waiting job (/metrics)

    async def add(self, jobs: Sequence[Job]) -> list[tuple[Job, bool]]:
        """Store the jobs in order (those without a debounce key in one write). A submission that replaced a waiting
        job is answered (that job, marked `debounced`, True): like a duplicate, nothing new was made."""
        plain = [job for job in jobs if job.debounce is None]
        stored = iter(await self.store.add(plain) if plain else [])
        answers = []
        for job in jobs:
            answers.append(next(stored) if job.debounce is None else await self._one(job))
        return answers

    async def _one(self, job: Job) -> tuple[Job, bool]:
        taken: list[Job] = []

        def replace(waiting: Job) -> Job | None:
            if waiting.id in self.ready.held:
                ready = None if self.store.shared else self.ready.discard(waiting.id)
                if ready is None:
                    return None  # claimed by this process, or handed to a worker here: it has started
            self.ready.cancelling.add(waiting.id)  # no feed takes its old version while the new one is written
            taken.append(waiting)
            return replace_pending(waiting, job, self.clock())

        try:
            stored, replaced = await self.store.debounce(job, replace)
        except BaseException:
            for waiting in self._release(taken):
                self.schedule(waiting)  # not replaced: it waits as it was
            raise
        self._release(taken)
        if not replaced:
            return stored, stored is not job  # another job stored under this id already: a duplicate
        self.replaced += 1
        log.debug("job %s debounced: runs at %.3f", stored.id, stored.run_at)
        self.schedule(stored)
        return msgspec.structs.replace(stored, debounced=True), True

    def _release(self, taken: list[Job]) -> list[Job]:
        for waiting in taken:
            self.ready.cancelling.discard(waiting.id)
            self.ready.held.pop(waiting.id, None)
        return taken

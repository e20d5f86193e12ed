"""Dead jobs: the store holds the truth, the dead-letter directory (deadletter.py) a copy for people and tools.

A dead job can be read, retried and deleted from the store whatever the directory's state. A letter the directory
cannot take (read-only, full) is owed: counted in `poulpe_dead_letters_owed` and written by a timer with backoff
once the directory takes it again. A letter that cannot be removed (after a retry or a delete) is removed by the
same timer later, and ignored meanwhile. Nothing polls when nothing is owed. After a restart the owed letters are
found again: dead jobs in the store without a letter.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from poulpe.deadletter import DeadLetters
from poulpe.errors import Unavailable
from poulpe.job import Job, Status
from poulpe.store.base import Store

log = logging.getLogger(__name__)
_EVERY = 1 << 40  # "all of them" for Store.ids
_CHUNK = 500


def _day(job: Job) -> str:
    return dt.datetime.fromtimestamp(job.finished_at or 0.0, dt.UTC).strftime("%Y-%m-%d")


class DeadJobs:
    def __init__(
        self,
        store: Store,
        letters: DeadLetters,
        *,
        first_delay: float = 1.0,
        max_delay: float = 30.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.store = store
        self.letters = letters
        self.owed: dict[str, str] = {}  # dead in the store, letter not written yet: id -> UTC day of death
        self.unremoved: set[str] = set()  # letters left on disk by jobs no longer dead (retried or deleted)
        self.held: dict[str, Job] = {}  # owed letters whose job the store is about to forget (--result_ttl)
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.sleep = sleep  # the backoff's timer: a test moves it by hand instead of waiting it out
        self._timer: asyncio.Task[None] | None = None
        self._scan: asyncio.Task[None] | None = None

    # --- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Find, in the background, what a previous run left owed (the store may be away: tried again)."""
        self._scan = asyncio.get_running_loop().create_task(self._find_owed(), name="poulpe-dead-letter-scan")

    async def stop(self) -> None:
        for task in (self._scan, self._timer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._scan = self._timer = None

    @property
    def settling(self) -> bool:
        """True while a timer is set to write owed letters or remove leftover ones (never when nothing is owed)."""
        return self._timer is not None and not self._timer.done()

    # --- on the job's path -----------------------------------------------------------------------------------
    async def bury(self, job: Job) -> None:
        """Write a dying job's letter (before the store marks it dead); owed when the directory refuses it."""
        self.unremoved.discard(job.id)
        try:
            await self.letters.write(job)
        except OSError as exc:
            self.letters.write_errors += 1
            self.owed[job.id] = _day(job)
            log.error("job %s is dead but its dead letter could not be written (owed, tried again): %s", job.id, exc)
            self._arm()
            return
        self.owed.pop(job.id, None)
        self.held.pop(job.id, None)
        if self.owed or self.unremoved:
            self._arm(now=True)  # the directory takes files again: settle what is owed at once

    async def letter_gone(self, job_id: str) -> None:
        """The job is no longer dead (retried, deleted): its letter goes now, or later if the directory refuses."""
        self.owed.pop(job_id, None)
        self.held.pop(job_id, None)
        try:
            await self.letters.remove(job_id)
        except OSError as exc:
            self.unremoved.add(job_id)
            log.warning("the dead letter of job %s could not be removed (ignored, removed later): %s", job_id, exc)
            self._arm()

    async def letters_gone(self, job_ids: Sequence[str]) -> None:
        """`letter_gone` for many jobs at once (a bulk retry's chunk)."""
        for job_id in job_ids:
            self.owed.pop(job_id, None)
            self.held.pop(job_id, None)
        try:
            failed = await self.letters.remove_many(job_ids)
        except OSError as exc:
            failed = dict.fromkeys(job_ids, exc)
        for job_id, why in failed.items():
            self.unremoved.add(job_id)
            log.warning("the dead letter of job %s could not be removed (ignored, removed later): %s", job_id, why)
        if failed:
            self._arm()

    # --- what the routes ask ---------------------------------------------------------------------------------
    async def find(self, job_id: str) -> Job | None:
        """The dead job: the store's record, or its letter once the store forgot the job (--result_ttl)."""
        job = await self.store.get(job_id)
        if job is not None:
            return job if job.status is Status.DEAD else None
        if job_id in self.held:
            return self.held[job_id]
        if job_id in self.unremoved:  # deleted, its letter not removed yet
            return None
        with contextlib.suppress(OSError, ValueError):
            return await self.letters.read(job_id)
        return None

    async def delete(self, job_id: str) -> bool:
        """Forget a dead job: from the store first (the truth), then its letter, now or later. False: not dead."""
        job = await self.store.get(job_id)
        if job is not None or job_id in self.held:
            if job is not None and job.status is not Status.DEAD:
                return False
            await self.store.delete(job_id)
            await self.letter_gone(job_id)
            return True
        if job_id in self.unremoved:
            return False
        try:  # the store forgot the job: its letter is all there is, and nothing changes unless it goes
            return await self.letters.remove(job_id)
        except OSError as exc:
            raise Unavailable(f"the dead letter of job {job_id} could not be removed: {exc}") from None

    async def page(self, *, page: int, size: int) -> tuple[list[dict[str, Any]], int]:
        """Dead jobs: those whose letter is owed (`"file": null`) first, then the letters, newest day first. A
        letter left by a job no longer dead is not listed."""
        owed = [
            {"id": i, "day": d, "file": None} for i, d in sorted(self.owed.items(), key=lambda e: e[1], reverse=True)
        ]
        hidden = set(self.owed) | self.unremoved
        written = [item for item in await self.letters.entries() if item["id"] not in hidden]
        listed = owed + written
        return listed[(page - 1) * size : page * size], len(listed)

    async def before_purge(self, finished_before: float) -> None:
        """The store is about to forget final jobs (--result_ttl): an owed letter's job is kept here until written
        (in memory: a restart before the directory takes it loses it, logged now)."""
        for job in await self._get(set(self.owed) - set(self.held)):
            if job.status is Status.DEAD and (job.finished_at or 0.0) < finished_before:
                self.held[job.id] = job
                log.warning("job %s: its dead letter is still owed when the store forgets it; kept in memory", job.id)

    # --- settling what is owed -------------------------------------------------------------------------------
    def _arm(self, *, now: bool = False) -> None:
        if self._timer is not None and not self._timer.done():
            if not now:
                return
            self._timer.cancel()
        delay = 0.0 if now else self.first_delay
        self._timer = asyncio.get_running_loop().create_task(self._settle_later(delay), name="poulpe-dead-letters")

    async def _settle_later(self, delay: float) -> None:
        while self.owed or self.unremoved:
            await self.sleep(delay)
            delay = min(max(delay * 2, self.first_delay), self.max_delay)
            with contextlib.suppress(Unavailable):
                await self._settle()

    async def _settle(self) -> None:
        """Write the owed letters and remove the unremoved ones; stop at the first the directory still refuses."""
        for job_id in list(self.owed):
            job = self.held.get(job_id) or await self.store.get(job_id)
            if job is not None and not job.final:  # its death is not stored yet (a slow store): later
                continue
            if job is not None and job.status is Status.DEAD:
                try:
                    await self.letters.write(job)
                except OSError:
                    return
                if job_id not in self.owed:  # retried or deleted while its letter was being written
                    await self.letter_gone(job_id)
                    continue
                log.info("job %s: its dead letter is written now", job_id)
            self.owed.pop(job_id, None)
            self.held.pop(job_id, None)
        for job_id in list(self.unremoved):
            job = await self.store.get(job_id)
            if job is None or job.status is not Status.DEAD:  # dead again: the letter there is its own
                try:
                    await self.letters.remove(job_id)
                except OSError:
                    return
            self.unremoved.discard(job_id)

    async def _find_owed(self) -> None:
        delay = self.first_delay
        while True:
            try:
                await self._scan_once()
                return
            except (Unavailable, OSError) as exc:
                log.warning("dead letters owed by a previous run: not checked yet (%s)", exc)
            await self.sleep(delay)
            delay = min(delay * 2, self.max_delay)

    async def _scan_once(self) -> None:
        dead = set(await self.store.ids(Status.DEAD, _EVERY))
        written = {item["id"] for item in await self.letters.entries()}
        for job in await self._get(dead - written):
            if job.status is Status.DEAD:
                self.owed.setdefault(job.id, _day(job))
        for job in await self._get(written - dead):  # jobs the store forgot are not returned: their letters stay
            if job.status is not Status.DEAD:
                self.unremoved.add(job.id)
        if self.owed or self.unremoved:
            log.warning("%d dead letters owed, %d to remove: writing them", len(self.owed), len(self.unremoved))
            self._arm(now=True)

    async def _get(self, ids: Iterable[str]) -> list[Job]:
        wanted, found = sorted(ids), []
        for start in range(0, len(wanted), _CHUNK):
            found += await self.store.get_many(wanted[start : start + _CHUNK])
        return found

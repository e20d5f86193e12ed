"""SharedFeed: the schedule lives in a store shared by several processes (Redis), which claim due jobs from it.

Every process claims due jobs with a lease, only as many as it has free workers (plus a few held ready). It sleeps
until the earliest due time or lease end the store reported, a worker frees up, or a `work` message says another
process stored something due sooner. Nothing polls. The store's side is the `SharedSchedule` protocol: claim,
renew, listen, request_cancel (RedisStore implements it; `Store.shared_schedule()` hands it over).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from poulpe.dispatch.events import (
    Events,
    FinishedElsewhere,
    LeaseLost,
    LeaseSet,
    LimitsChanged,
    QueuedElsewhere,
    Reconnected,
)
from poulpe.dispatch.ready import Ready
from poulpe.errors import Unavailable
from poulpe.job import LEASE_LOST, Job, Status
from poulpe.store.base import SharedSchedule

log = logging.getLogger("poulpe.jobs")
CLAIM_MAX = 500  # jobs leased in one claim at most


class SharedFeed:
    owns_schedule = False  # every job is claimed from the shared schedule, a due one too: none goes straight to ready

    def __init__(
        self, ready: Ready, store: SharedSchedule, events: Events, *, lease: float, clock: Callable[[], float]
    ) -> None:
        self.ready = ready
        self.store = store
        self.events = events
        self.lease = lease
        self.clock = clock
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._taking = False
        self._unsure = False
        self._held: dict[str, str] = {}  # keys the last claims passed over, and why (a held job's state says it)
        ready.limits.counted_elsewhere = True  # parallelism and rates are counted in Redis, by the claim

    async def start(self) -> None:
        self._taking = True
        self._tasks = [
            asyncio.create_task(self._claim_forever(), name="poulpe-claims"),
            asyncio.create_task(self._renew_forever(), name="poulpe-leases"),
            asyncio.create_task(self.store.listen(self._on_message, self._on_connected), name="poulpe-events"),
            asyncio.create_task(self._refresh_forever(), name="poulpe-limits"),
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

    async def put_back(self, jobs: list[Job]) -> None:
        """Claimed but not started at shutdown: back to the shared schedule, for another process to claim."""
        for job in jobs:
            with contextlib.suppress(Exception):
                await self.store.save(job)

    async def request_cancel(self, job_id: str) -> None:
        """The job runs on another process: ask that one to cancel it after its attempt."""
        await self.store.request_cancel(job_id)

    async def key_counts(self, key: str) -> tuple[int, int, int]:
        """(waiting, running, started in the period) of a key, counted in Redis across every process."""
        waiting, leased, started = await self.store.key_counts(key, self.ready.limits.of(key).period)
        return waiting + self.ready.waiting[key], leased - self.ready.waiting[key], started

    async def busy_keys(self) -> dict[str, tuple[int, int]]:
        return await self.store.busy_keys()

    def held_reason(self, key: str) -> str | None:
        return self.ready.limits.held(key) or self._held.get(key)

    async def _refresh_forever(self) -> None:
        """Limits and pauses changed by any process are seen within a second, even if a `limits` message is lost."""
        while True:
            await asyncio.sleep(1.0)
            self.events.emit(LimitsChanged())

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
        ready = self.ready
        return ready.workers + max(1, ready.workers // 4) - ready.busy - len(ready)

    async def _claim_forever(self) -> None:
        backoff = 0.05
        while self._taking:
            room = min(self._room(), CLAIM_MAX)
            self._wake.clear()
            if room <= 0:
                await self._wake.wait()
                continue
            try:
                recheck = self.ready.held_ids() if self._unsure else None
                claimed = await self.store.claim(
                    room, self.lease, self.clock(), recheck=recheck, defaults=self.ready.limits.defaults
                )
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
                self._claimed(job)
                self._held.pop(job.key or "", None)
            self._held.update(claimed.held)
            if len(claimed.jobs) == room:
                continue  # there may be more due: claim again as soon as there is room
            times = [t for t in (claimed.next_due, claimed.next_lease_end, claimed.next_token) if t is not None]
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
            held = self.ready.held_ids()
            try:
                lost = await self.store.renew(held, self.lease)
            except Exception as exc:  # the next renewal tries again, well within the lease
                if not isinstance(exc, Unavailable):
                    log.exception("renewing leases failed")
                continue
            for job_id in lost:
                log.warning("job %s: its lease was taken by another process (this one was too slow)", job_id)

    def _claimed(self, job: Job) -> None:
        if self.ready.holds(job.id):
            return
        if job.status is Status.RUNNING:
            job.interrupt(LEASE_LOST, self.clock())
            log.info("job %s taken back: attempt %d lost its process, it runs again", job.id, job.attempts)
            self.events.emit(LeaseLost(job))
        self.ready.take(job)

    def _on_message(self, channel: str, payload: str) -> None:
        if channel == "work":
            self._wake.set()
        elif channel == "done":  # one message for the jobs a write ended
            for job_id in payload.split(" "):
                self.events.emit(FinishedElsewhere(job_id))
        elif channel == "cancel":  # a cancel asked on another process, for a job running here
            job = self.ready.held.get(payload)
            if job is not None and job.status is Status.RUNNING:
                self.ready.cancel_after.add(payload)
        elif channel == "queued":
            self.events.emit(QueuedElsewhere(payload))
        elif channel == "xlease":
            self.events.emit(LeaseSet(float(payload)))
        elif channel == "limits":  # a key's limits or the pause changed: re-read them, and claim again
            self.events.emit(LimitsChanged())
            self._wake.set()

    def _on_connected(self) -> None:
        """(Re)subscribed: claim again, and look at long-polls whose job may have finished meanwhile."""
        self._wake.set()
        self.events.emit(Reconnected())

"""External workers (SPEC 6, the easyTask model): they say hello, beat, lease QUEUE jobs of their task type and
report each one done or failed.

Leases live in the store (the holder and the lease end are in the job record, so they survive a restart and are
shared by processes on one Redis). A lease that ends without a report, or whose worker stops beating, is a failed
attempt: the job's retry policy applies, and a job out of attempts is dead with its dead letter. Expiry is one timer
set for the earliest lease end, not a polling loop; silence is one timer per beating worker, pushed back by each
beat. The registry of workers (hello, beats, the jobs each holds) is kept by this process only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from poulpe.dispatch.events import JobsQueued, LeaseLost, LeaseSet, QueuedElsewhere
from poulpe.errors import Conflict, NotFound, Unavailable
from poulpe.job import Job, Method, Status
from poulpe.manager import JobManager
from poulpe.runners import Outcome

log = logging.getLogger("poulpe.external")
DEFAULT_BEAT_S = 10.0
SILENT_BEATS = 3  # a worker is silent after this many beat intervals without a beat
EXPIRY_BATCH = 100
FORGET_S = 3600.0  # a worker not heard from for this long, holding nothing, leaves the registry


@dataclass
class Worker:
    """One external worker as this process knows it."""

    type: str
    name: str
    last_beat: float
    beat_s: float | None = None  # set by hello: only a worker that promised beats can fall silent
    held: set[str] = field(default_factory=set)
    silence: asyncio.TimerHandle | None = None
    forget: asyncio.TimerHandle | None = None

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, "last_beat": self.last_beat, "jobs": sorted(self.held)}


class ExternalWorkers:
    def __init__(
        self,
        manager: JobManager,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.manager = manager
        self.clock = clock
        self.sleep = sleep  # the expiry timer's wait: a test moves `clock` and this wait with it instead of waiting
        self._workers: dict[tuple[str, str], Worker] = {}
        self._expiry: asyncio.Task[None] | None = None
        self._expiry_at: float | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._waiting: defaultdict[str, set[asyncio.Future[None]]] = defaultdict(set)  # leases waiting for work
        self._unlisten: list[Callable[[], None]] = []

    async def start(self) -> None:
        """Set the expiry timer for leases stored before this process started; hear of new QUEUE jobs."""
        try:
            self._arm(await self.manager.store.next_lease_end())
        except Unavailable:  # the store is away (a full disk, Redis down): look again in a second
            self._arm(self.clock() + 1.0)
        events = self.manager.events
        self._unlisten = [
            events.on(JobsQueued, lambda event: self._on_queued(event.jobs)),
            # processes sharing a Redis store tell each other of new work and new leases (SharedFeed's pub/sub)
            events.on(QueuedElsewhere, lambda event: self._wake(event.kind, 1)),
            events.on(LeaseSet, lambda event: self._arm(event.until)),
        ]
        self._spawn(self._release_on_drain)

    async def stop(self) -> None:
        for unlisten in self._unlisten:
            unlisten()
        if self._expiry is not None:
            self._expiry.cancel()
        for worker in self._workers.values():
            for timer in (worker.silence, worker.forget):
                if timer is not None:
                    timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- the registry ------------------------------------------------------------------------------------------
    def hello(self, kind: str, name: str, beat_s: float | None = None) -> Worker:
        """A worker announces itself; with `beat_s`, it is silent after SILENT_BEATS beats missed."""
        worker = self._beat(kind, name)
        worker.beat_s = beat_s or DEFAULT_BEAT_S
        self._watch(worker)
        log.info("worker %s/%s said hello (beats every %gs)", kind, name, worker.beat_s)
        return worker

    def heartbeat(self, kind: str, name: str) -> Worker:
        worker = self._beat(kind, name)
        self._watch(worker)
        return worker

    def listing(self) -> list[dict[str, Any]]:
        return [worker.to_json() for worker in sorted(self._workers.values(), key=lambda w: (w.type, w.name))]

    def _beat(self, kind: str, name: str) -> Worker:
        worker = self._workers.get((kind, name))
        if worker is None:
            worker = self._workers[(kind, name)] = Worker(kind, name, self.clock())
        worker.last_beat = self.clock()
        if worker.forget is not None:
            worker.forget.cancel()
        worker.forget = asyncio.get_running_loop().call_later(FORGET_S, self._forget, worker)
        return worker

    def _forget(self, worker: Worker) -> None:
        """Names come and go (a worker per container): the registry keeps only workers heard from lately."""
        if worker.held:
            worker.forget = asyncio.get_running_loop().call_later(FORGET_S, self._forget, worker)
            return
        if worker.silence is not None:
            worker.silence.cancel()
        if self._workers.get((worker.type, worker.name)) is worker:
            del self._workers[(worker.type, worker.name)]

    def _watch(self, worker: Worker) -> None:
        if worker.beat_s is None:
            return
        if worker.silence is not None:
            worker.silence.cancel()
        loop = asyncio.get_running_loop()
        worker.silence = loop.call_later(worker.beat_s * SILENT_BEATS, self._spawn, self._fell_silent, worker)

    async def _fell_silent(self, worker: Worker) -> None:
        worker.silence = None
        if not worker.held:
            return
        log.warning("worker %s/%s stopped beating: its %d jobs go back", worker.type, worker.name, len(worker.held))
        jobs = await self.manager.store.get_many(sorted(worker.held))
        error = f"worker {worker.name} stopped beating (no beat for {worker.beat_s or 0:g}s x {SILENT_BEATS})"
        for job in jobs:
            await self._end(job, worker.name, Outcome(ok=False, error=error))

    # --- leases and reports ------------------------------------------------------------------------------------
    async def lease(self, kind: str, name: str, n: int, lease_s: float, wait: float = 0.0) -> list[Job]:
        """Up to `n` due jobs of this type, now running for this worker until `lease_s` seconds from now. With
        `wait`, an empty answer is held up to that many seconds: it wakes when a job of the type is queued (in
        this process) or when the next scheduled one is due, never by polling."""
        worker = self._beat(kind, name)
        self._watch(worker)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            woken = loop.create_future()  # before the lease: a job queued in between is not missed
            self._waiting[kind].add(woken)
            try:
                jobs = await self._take(worker, n, lease_s)
                left = deadline - loop.time()
                if jobs or left <= 0 or not self.manager.accepting:
                    return jobs
                due = await self.manager.store.next_due(kind)
                if due is not None:
                    left = min(left, max(due - self.clock(), 0.0))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(left):
                        await woken
            finally:
                self._waiting[kind].discard(woken)
                if not self._waiting[kind]:
                    del self._waiting[kind]

    def _on_queued(self, jobs: list[Job]) -> None:
        for job in jobs:
            self._wake(job.name, 1)

    def _wake(self, kind: str, count: int) -> None:
        """Wake up to `count` leases waiting for this type (one job is enough for one worker)."""
        for woken in [woken for woken in self._waiting.get(kind, ()) if not woken.done()][:count]:
            woken.set_result(None)

    async def _release_on_drain(self) -> None:
        await self.manager.draining.wait()
        for waiting in self._waiting.values():
            for woken in waiting:
                if not woken.done():
                    woken.set_result(None)

    async def _take(self, worker: Worker, n: int, lease_s: float) -> list[Job]:
        kind, name = worker.type, worker.name
        now = self.clock()
        jobs = await self.manager.store.lease_queue(kind, n, name, now + lease_s, now)
        worker.held.update(job.id for job in jobs)
        for job in jobs:
            if job.started_at is not None:
                self.manager.metrics.started(job.started_at - job.run_at)
        if jobs:
            self._arm(now + lease_s)
            log.info("worker %s/%s leased %d jobs for %gs", kind, name, len(jobs), lease_s)
        return jobs

    async def complete(self, job_id: str, name: str, result: Any, remark: str | None = None) -> Job:
        job = await self._held(job_id, name)
        job.remark = remark
        await self._report(job, name, Outcome(ok=True, result=result))
        return job

    async def fail(self, job_id: str, name: str, error: str | None, result: Any = None) -> Job:
        job = await self._held(job_id, name)
        outcome = Outcome(ok=False, result=result, error=error or f"worker {name} reported a failure")
        await self._report(job, name, outcome)
        return job

    async def _held(self, job_id: str, name: str) -> Job:
        job = await self.manager.get(job_id)
        if job is None:
            raise NotFound(f"no job with id {job_id[:128]}")
        if job.method is not Method.QUEUE:
            raise Conflict(f"job {job_id} is a {job.method} job: only QUEUE jobs are reported by workers")
        if job.status is not Status.RUNNING or job.lease_holder != name:
            holder = f" held by {job.lease_holder}" if job.status is Status.RUNNING else ""
            raise Conflict(f"job {job_id} is not held by worker {name[:128]}: it is {job.status}{holder}", "worker")
        return job

    async def _report(self, job: Job, name: str, outcome: Outcome) -> None:
        if not await self._end(job, name, outcome):
            raise Conflict(f"job {job.id} is no longer held by worker {name[:128]} (its lease ended)", "worker")

    async def _end(self, job: Job, holder: str, outcome: Outcome) -> bool:
        kind = job.name
        ended = await self.manager.finish_external(job, outcome, holder)
        spans = self.manager.attempt.spans
        if ended and spans is not None:  # the attempt's span: from the lease to this end (tracing on)
            spans.external(job, outcome)
        worker = self._workers.get((kind, holder))
        if worker is not None:
            worker.held.discard(job.id)
        if ended and job.status is Status.RETRYING:
            self._wake(kind, 1)  # a waiting lease sees its new due time (or takes it, with no delay)
        return ended

    # --- expiry --------------------------------------------------------------------------------------------------
    def _arm(self, at: float | None) -> None:
        """Make sure the expiry timer fires by `at`."""
        if at is None or (self._expiry_at is not None and self._expiry_at <= at):
            return
        if self._expiry is not None:
            self._expiry.cancel()
        self._expiry_at = at
        self._expiry = self._spawn(self._expire, at)

    def _spawn(self, work: Callable[..., Coroutine[Any, Any, None]], *args: Any) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work(*args))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _expire(self, at: float) -> None:
        await self.sleep(max(0.0, at - self.clock()))
        self._expiry, self._expiry_at = None, None  # from here on a new lease end arms a timer of its own
        try:
            while True:
                now = self.clock()
                expired = await self.manager.store.expired_leases(now, EXPIRY_BATCH)
                for job in expired:
                    holder = job.lease_holder or ""
                    error = f"lease of worker {holder} ended without a report"
                    self.manager.events.emit(LeaseLost(job))
                    await self._end(job, holder, Outcome(ok=False, error=error))
                    log.info("job %s: the lease of worker %s/%s ended without a report", job.id, job.name, holder)
                if len(expired) < EXPIRY_BATCH:
                    break
        except Exception as exc:  # the next lease or a restart sets the timer again
            log.error("expiring leases failed: %s", exc)
            with contextlib.suppress(RuntimeError):
                self._arm(self.clock() + 1.0)
            return
        self._arm(await self.manager.store.next_lease_end())

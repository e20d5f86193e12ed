"""JobManager: what the routes ask of poulpe: submit (store, then ack), get, wait, cancel, retry from the dead
letters, and the queries. It builds the dispatch engine and never hears from it again: workers pull their jobs
from the ready structure (dispatch/ready.py), the finish step (outcome.py) stores and tells, and what other parts
react to goes through the event bus (dispatch/events.py).

intake → validate → submit → store → ready (a job due now, embedded store; any other waits in dispatch/local.py
or shared.py first) → a worker's attempt → runner → finish → store → events (long-polls, `wait`, callbacks, Kafka).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec

from poulpe.action_pace import Intake, Signals
from poulpe.actions import CHUNK, Actions
from poulpe.batch_record import Batch
from poulpe.batches import BatchTeller
from poulpe.chains import Chains
from poulpe.checks import Limits as JobLimits
from poulpe.dead_retry import DeadRetry
from poulpe.deadjobs import DeadJobs
from poulpe.deadletter import DeadLetters
from poulpe.deadlines import Deadlines
from poulpe.debounce import Debouncer
from poulpe.dispatch.controls import Controls
from poulpe.dispatch.events import Events, FinishedElsewhere, JobFinal, JobsQueued, LimitsChanged, Reconnected
from poulpe.dispatch.limits import Limits
from poulpe.dispatch.local import LocalFeed
from poulpe.dispatch.ready import Ready
from poulpe.dispatch.shared import SharedFeed
from poulpe.errors import BadRequest, Conflict, NotFound, Unavailable
from poulpe.job import DEFAULT_RETRY, FINAL, WAITING, Job, Method, RetryPolicy, Status
from poulpe.keys import KeyLimits
from poulpe.metrics import Metrics
from poulpe.outcome import Attempt, Finish
from poulpe.queries import Queries
from poulpe.runners import Outcome, Runner
from poulpe.store.base import Store
from poulpe.workers import Workers

log = logging.getLogger("poulpe.jobs")


class JobManager(Queries):
    def __init__(
        self,
        store: Store,
        runners: Mapping[Method, Runner],
        dead: DeadLetters,
        *,
        workers: int = 8,
        default_retry: RetryPolicy = DEFAULT_RETRY,
        job_timeout: float = 30.0,
        result_ttl: float = 86400.0,
        lease: float = 60.0,
        node: str = "poulpe",
        clock: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
        key_defaults: KeyLimits | None = None,
        limits: JobLimits | None = None,
    ) -> None:
        self.store = store
        self.runners = runners
        self.dead = dead
        self.dead_jobs = DeadJobs(store, dead)  # the store is the truth, the directory its copy (deadjobs.py)
        self.default_retry = default_retry
        self.job_timeout = job_timeout
        self.result_ttl = result_ttl
        self.node = node
        self.clock = clock
        self.metrics = metrics or Metrics()
        self.events = Events()
        self.events.on(FinishedElsewhere, lambda event: self._finished_elsewhere(event.job_id))
        self.events.on(Reconnected, lambda event: self._recheck_waiters())
        self.ready = Ready(workers, limits=Limits(key_defaults, clock=clock), clock=clock)
        self.feed: LocalFeed | SharedFeed
        schedule = store.shared_schedule()
        if schedule is not None:
            self.feed = SharedFeed(self.ready, schedule, self.events, lease=lease, clock=clock)
        else:
            self.feed = LocalFeed(self.ready, store, clock=clock)
        self.ready.on_free = self.feed.poke
        self.controls = Controls(store, self.ready, self.feed)  # keys' limits and pauses (SPEC 10.1)
        self.events.on(LimitsChanged, lambda event: self.controls.reload_soon())
        self.finish = Finish(
            store,
            self.dead_jobs,
            self.ready,
            self.feed,
            self.events,
            self.metrics,
            default_retry=default_retry,
            clock=clock,
        )
        limits = limits or JobLimits(workers=workers, default_retry=default_retry)
        self.finish.chains = Chains(limits, number=self._number, clock=clock)  # a job's children (SPEC 10.3)
        self.batch_teller = BatchTeller(
            store, self.submit, limits, clock=clock, registry=self.metrics.registry
        )  # batches' ends (SPEC 10.3)
        self.finish.batch_job_ended = self.batch_teller.poke
        self.dead_retry = DeadRetry(store, self.dead_jobs, self._schedule, clock)
        self.intake = Intake()  # submissions here: bulk actions yield to them (action_pace.py)
        load = Signals(self.intake, lambda: 0 if self.ready.limits.paused_all else len(self.ready), CHUNK)
        self.actions = Actions(
            store, self, hold=lease, clock=clock, registry=self.metrics.registry, signals=load
        )  # bulk actions (SPEC 10.4)
        self.attempt = attempt = Attempt(
            self.ready, runners, self.finish, node=node, job_timeout=job_timeout, clock=clock
        )
        self.deadlines = attempt.deadlines = Deadlines(
            store, self.ready, self.dead_jobs, self.events, self.metrics, clock=clock
        )
        self.workers = Workers(self.ready, attempt)
        self.debouncer = Debouncer(store, self.ready, self._enqueue, clock=clock)
        self.accepting = False
        self.draining = asyncio.Event()  # set once: WebSocket sessions and other long-lived intakes close on it
        self._seq = 0
        self._purger: asyncio.Task[None] | None = None

    # --- lifecycle -------------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Recover (embedded store) or join the shared schedule (Redis), then take jobs."""
        with contextlib.suppress(Unavailable):  # Redis may be away at start: intake answers 503 until it is back
            self._seq = await self.store.max_seq()
            await self.controls.load()
        await self.feed.start()
        self.deadlines.start()
        self.workers.start()
        self._purger = asyncio.create_task(self._purge_forever(), name="poulpe-purge")
        self.dead_jobs.start()
        self.batch_teller.start()
        self.actions.start()
        self.accepting = True

    def stop_intake(self) -> None:
        """First step of a drain: new jobs get 503 and every long-poll answers with the current state."""
        self.accepting = False
        self.draining.set()
        self.events.release_all()

    async def stop(self, grace: float) -> None:
        """Drain: running attempts get `grace` seconds; what is left stays stored and runs after a restart."""
        self.stop_intake()
        self.feed.stop_taking()
        await self.feed.put_back(await self.workers.stop(grace))  # claimed but not started: back to the schedule
        await self.finish.wait_recorded(grace)
        await self.feed.close()
        self.deadlines.stop()
        await self.dead_jobs.stop()
        await self.batch_teller.stop()
        await self.actions.stop()
        if self._purger is not None:
            self._purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purger

    # --- intake ----------------------------------------------------------------------------------------------
    async def submit(self, jobs: Sequence[Job]) -> list[tuple[Job, bool]]:
        """Store the jobs, then schedule them. Returns (job, duplicate) for each; a duplicate is never run twice."""
        with self.intake.one(len(jobs)):
            return await self._submit(jobs)

    async def _submit(self, jobs: Sequence[Job]) -> list[tuple[Job, bool]]:
        if not self.accepting:
            raise Unavailable("poulpe is shutting down: the job was not accepted")
        debounced = False
        for job in jobs:
            job.seq = self._number()
            debounced = debounced or job.debounce is not None  # SPEC 10.2, debounce.py
        stored = await (self.debouncer.add(jobs) if debounced else self.store.add(jobs))
        fresh = [job for job, duplicate in stored if not duplicate]
        self.metrics.accepted([job.method for job in fresh])  # a StrEnum counts as its text
        debug = log.isEnabledFor(logging.DEBUG)  # asked once per submission, not once per job of a batch
        for job in fresh:
            if debug:
                log.debug("job %s %s attempt=0 run_at=%.3f", job.id, job.status, job.run_at)
            self._enqueue(job)
            if job.deadline is not None:
                self.deadlines.watch(job)
        self._tell_queued(fresh)
        return stored

    async def submit_batch(self, batch: Batch, jobs: Sequence[Job]) -> Batch | str | None:
        """Store a batch and its jobs, all or none, then schedule them (SPEC 10.3). None when stored; nothing
        stored and the known batch when its id is known, or the first job id already known."""
        with self.intake.one(len(jobs)):
            return await self._submit_batch(batch, jobs)

    async def _submit_batch(self, batch: Batch, jobs: Sequence[Job]) -> Batch | str | None:
        if not self.accepting:
            raise Unavailable("poulpe is shutting down: the batch was not accepted")
        for job in jobs:
            job.seq = self._number()
        known = await self.store.add_batch(batch, jobs)
        if known is None:
            self.metrics.accepted([job.method.value for job in jobs])
            for job in jobs:
                self._enqueue(job)
            self._tell_queued(list(jobs))
        return known

    def _number(self) -> int:
        """The next acceptance number: time-ordered, so acceptance order holds across processes sharing one store
        (µs since 1970)."""
        self._seq = max(self._seq + 1, int(self.clock() * 1_000_000))
        return self._seq

    def _enqueue(self, job: Job) -> None:
        """A job due now goes straight to the ready structure when this process owns the schedule and there is
        room; any other waits in the feed (its time, its key's room, or a claim from the shared schedule)."""
        if job.method is Method.QUEUE:
            return  # held in the store for external workers
        if not (self.feed.owns_schedule and self.ready.admit(job)):
            self.feed.schedule(job)

    def _schedule(self, jobs: list[Job]) -> None:
        for job in jobs:
            self._enqueue(job)
        self._tell_queued(jobs)

    def _tell_queued(self, jobs: list[Job]) -> None:
        """External workers waiting for QUEUE jobs hear of the new ones (external.py)."""
        queued = [job for job in jobs if job.method is Method.QUEUE]
        if queued:
            self.events.emit(JobsQueued(queued))

    # --- what the other processes tell (a shared store) ------------------------------------------------------
    def _finished_elsewhere(self, job_id: str) -> None:
        """Another process finished a job: wake the long-polls waiting for it here."""
        if self.events.waited(job_id) and job_id not in self.ready.held:
            asyncio.get_running_loop().create_task(self._wake_waiters([job_id]))

    def _recheck_waiters(self) -> None:
        """After a reconnection: jobs waited on here may have finished while messages could not arrive."""
        ids = [job_id for job_id in self.events.waited_ids() if job_id not in self.ready.held]
        if ids:
            asyncio.get_running_loop().create_task(self._wake_waiters(ids))

    async def _wake_waiters(self, ids: list[str]) -> None:
        with contextlib.suppress(Unavailable):
            for job in await self.store.get_many(ids):
                if job.final:
                    self.events.finished(job)

    # --- queries and commands --------------------------------------------------------------------------------
    async def get(self, job_id: str) -> Job | None:
        """The job's freshest state, or None when unknown or expired (--result_ttl)."""
        live = self.ready.held.get(job_id)
        if live is not None and not live.final:  # final but still held: the finish step has not stored it yet
            return self._with_held(live)
        job = await self.store.get(job_id)
        if job is not None and job.final and (job.finished_at or 0) + self.result_ttl < self.clock():
            return None
        return self._with_held(job) if job is not None else None

    def _with_held(self, job: Job) -> Job:
        """A due job held back by its key or the deployment-wide pause is answered with the reason (on a copy:
        the reason is never stored)."""
        held = self.controls.held(job) if job.run_at <= self.clock() else None
        return msgspec.structs.replace(job, held=held) if held is not None else job

    async def run_now(self, job_id: str, mark: str | None = None) -> Job:
        """A scheduled or retrying job becomes due now (its key's limits still apply)."""
        job = await self.get(job_id)
        if job is None:
            raise NotFound(f"no job with id {job_id}")
        if job.status is Status.RUNNING or job.final:
            raise Conflict(f"job {job_id} is {job.status}: only a waiting job can be run now")
        if (job.status in WAITING and job.status is not Status.QUEUED) or job.run_at > self.clock():
            job.held = None
            job.status, job.run_at = Status.QUEUED, self.clock()
            job.mark(mark)
            await self.store.save(job)
            log.info("job %s run now attempt=%d", job.id, job.attempts)
            self._enqueue(job)
            self._tell_queued([job])
        return job

    async def wait(self, job_id: str, timeout: float) -> Job | None:  # noqa: ASYNC109 (a long-poll's own limit)
        """The job once final, or its state when `timeout` passes first (or poulpe drains); None when unknown."""
        if timeout <= 0 or not self.accepting:
            return await self.get(job_id)
        fut = self.events.final(job_id)
        try:
            job = await self.get(job_id)
            if job is None or job.final:
                return job
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    done = await fut
                    if done is not None:
                        return done
        finally:
            self.events.forget(job_id, fut)
        return await self.get(job_id)

    async def cancel(self, job_id: str, mark: str | None = None) -> Job:
        job = await self.get(job_id)
        if job is None:
            raise NotFound(f"no job with id {job_id}")
        if job.status is Status.RUNNING:
            if job_id in self.ready.held:
                self.ready.cancel_after.add(job_id)
            else:  # it runs on another process: that one cancels it
                await self.feed.request_cancel(job_id)
            raise Conflict(f"job {job_id} is running: it will be cancelled after this attempt unless it succeeds")
        if job.status in FINAL:
            raise Conflict(f"job {job_id} is already {job.status}")
        self.ready.cancelling.add(job_id)
        try:
            self.ready.discard(job_id)
            self.ready.held.pop(job_id, None)
            job.status, job.finished_at = Status.CANCELLED, self.clock()
            job.mark(mark)
            await self.store.save(job)
        finally:
            self.ready.cancelling.discard(job_id)
        log.info("job %s cancelled attempt=%d", job.id, job.attempts)
        self.events.emit(JobFinal(job))
        if job.batch is not None:
            self.batch_teller.poke()
        return job

    async def retry_dead(self, job_id: str, mark: str | None = None) -> Job:
        """Run a dead job again with fresh attempts, from the store's record (or its letter once the store forgot
        it). The job is stored and scheduled first; its letter goes after, now or later (deadjobs.py)."""
        if not self.accepting:
            raise Unavailable("poulpe is shutting down")
        return await self.dead_retry.one(job_id, mark)

    async def retry_dead_many(self, job_ids: Sequence[str], mark: str) -> list[str]:
        """A bulk retry's chunk (dead_retry.py): why each job not retried was not."""
        if not self.accepting:
            raise Unavailable("poulpe is shutting down")
        return await self.dead_retry.many(job_ids, mark)

    async def sys_info(self, cap: int = 1000) -> dict[str, Any]:
        running = [job.id for job in self.workers.running if job is not None]
        delayed = await self.feed.delayed(cap + 1)
        failed = await self.store.ids(Status.DEAD, cap + 1)  # ids from the index: no dead record is decoded
        today = time.strftime("%Y-%m-%d", time.gmtime(self.clock()))
        paused = {"paused": True} if self.controls.limits.paused_all else {}  # POST /pause (SPEC 10.1)
        return {
            **paused,
            "workers": [
                {"id": n, "running": job.id if job else None, "queue": self.ready.only_for(n)}
                for n, job in enumerate(self.workers.running)
            ],
            "running": running[:cap],
            "delayed": delayed[:cap],
            "failed": failed[:cap],
            "truncated": len(delayed) > cap or len(failed) > cap,
            "counts": await self.store.counts(),
            "today": await self.store.day_counts(today),
        }

    async def _purge_forever(self) -> None:
        """Results expire after --result_ttl; `get` hides expired ones at once, this reclaims the space."""
        period = min(max(self.result_ttl / 2, 1.0), 300.0)
        while True:
            await asyncio.sleep(period)
            try:
                expired = self.clock() - self.result_ttl  # one bound for both: a job the purge forgets was seen first
                await self.dead_jobs.before_purge(expired)  # an owed letter outlives the TTL
                purged = await self.store.purge(expired)
                if purged:
                    log.info("purged %d expired results", purged)
            except Exception as exc:
                log.warning("purging expired results failed: %s", exc)

    # --- external workers (poulpe/external.py) -----------------------------------------------------------------
    async def finish_external(self, job: Job, outcome: Outcome, holder: str) -> bool:
        """End a leased QUEUE job's attempt with its worker's report (outcome.Finish.external)."""
        return await self.finish.external(job, outcome, holder)


def check_page(page: int, size: int) -> None:
    if page < 1 or page > 1_000_000:
        raise BadRequest("page must be between 1 and 1000000", "page")
    if not 1 <= size <= 1000:
        raise BadRequest("size must be between 1 and 1000", "size")

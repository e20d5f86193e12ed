"""JobManager: the one path every job takes, from submit (store, then ack) to the outcome (store, then wake).

intake → validate → submit → store → scheduler → workers → runner → decide → record: store + waiters (+ dead letter).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from poulpe.deadjobs import DeadJobs
from poulpe.deadletter import DeadLetters
from poulpe.errors import BadRequest, Conflict, NotFound, NotHeld, Unavailable
from poulpe.feeds import INTERRUPTED, LEASE_LOST, LocalFeed, SharedFeed
from poulpe.job import DEFAULT_RETRY, FINAL, Job, Method, RetryPolicy, Status
from poulpe.metrics import Metrics
from poulpe.runners import Outcome, Runner
from poulpe.store.base import Store
from poulpe.waiters import Waiters
from poulpe.workers import Workers

log = logging.getLogger("poulpe.jobs")


class JobManager:
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
        self.waiters = Waiters()
        self.feed: LocalFeed | SharedFeed
        if store.shared:
            from poulpe.store.redis import RedisStore  # only Redis users need its client

            assert isinstance(store, RedisStore)
            self.feed = SharedFeed(self, store, lease=lease)
        else:
            self.feed = LocalFeed(self)
        self.workers = Workers(workers, self._run, on_free=self.feed.poke)
        self.accepting = False
        self.draining = asyncio.Event()  # set once: WebSocket sessions and other long-lived intakes close on it
        self._live: dict[str, Job] = {}  # ready or running in this process: the freshest state
        self._cancel_after: set[str] = set()
        self._cancelling: set[str] = set()
        self._seq = 0
        self._purger: asyncio.Task[None] | None = None
        self._recording: set[asyncio.Task[None]] = set()
        self._remote: dict[str, Callable[[str], None]] = {}

    # --- lifecycle -------------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Recover (embedded store) or join the shared schedule (Redis), then take jobs."""
        with contextlib.suppress(Unavailable):  # Redis may be away at start: intake answers 503 until it is back
            self._seq = await self.store.max_seq()
        await self.feed.start()
        self.workers.start()
        self._purger = asyncio.create_task(self._purge_forever(), name="poulpe-purge")
        self.dead_jobs.start()
        self.accepting = True

    def stop_intake(self) -> None:
        """First step of a drain: new jobs get 503 and every long-poll answers with the current state."""
        self.accepting = False
        self.draining.set()
        self.waiters.release_all()

    async def stop(self, grace: float) -> None:
        """Drain: running attempts get `grace` seconds; what is left stays stored and runs after a restart."""
        self.stop_intake()
        self.feed.stop_taking()
        for job in await self.workers.stop(grace):  # claimed but not started: back to the shared schedule
            if self.store.shared:
                with contextlib.suppress(Exception):
                    await self.store.save(job)
        if self._recording:
            _, late = await asyncio.wait(self._recording, timeout=max(grace, 1.0))
            for task in late:  # the store is away: these outcomes are lost, their jobs run again (at least once)
                task.cancel()
        await self.feed.close()
        await self.dead_jobs.stop()
        if self._purger is not None:
            self._purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purger

    # --- intake ----------------------------------------------------------------------------------------------
    async def submit(self, jobs: Sequence[Job]) -> list[tuple[Job, bool]]:
        """Store the jobs, then schedule them. Returns (job, duplicate) for each; a duplicate is never run twice."""
        if not self.accepting:
            raise Unavailable("poulpe is shutting down: the job was not accepted")
        for job in jobs:
            # time-ordered, so acceptance order holds across processes sharing one store (µs since 1970)
            self._seq = max(self._seq + 1, int(self.clock() * 1_000_000))
            job.seq = self._seq
        stored = await self.store.add(jobs)
        self.metrics.accepted(stored)
        for job, duplicate in stored:
            if not duplicate:
                log.debug("job %s %s attempt=0 run_at=%.3f", job.id, job.status, job.run_at)
                self._enqueue(job)
        self.waiters.queued(stored)  # wakes external workers waiting for QUEUE jobs (external.py)
        return stored

    def _enqueue(self, job: Job) -> None:
        if job.method is Method.QUEUE:
            return  # held in the store for external workers
        self.feed.schedule(job)

    # --- what the feeds call ---------------------------------------------------------------------------------
    def take(self, job: Job) -> None:
        """A due job for this process's workers: from now on its freshest state is here."""
        self._live[job.id] = job
        self.workers.push(job)

    def holds(self, job_id: str) -> bool:
        return job_id in self._live or job_id in self._cancelling

    def held_ids(self) -> list[str]:
        return list(self._live)

    def interrupt(self, job: Job, why: str) -> None:
        """An attempt that never ended (its process stopped): closed as failed, not counted against the retries."""
        job.end_attempt(False, why, self.clock())
        job.status, job.run_at = Status.QUEUED, self.clock()

    def claimed(self, job: Job) -> None:
        """A job leased from the shared schedule (SharedFeed)."""
        if job.id in self._live:
            return
        if job.status is Status.RUNNING:
            self.interrupt(job, LEASE_LOST)
            log.info("job %s taken back: attempt %d lost its process, it runs again", job.id, job.attempts)
        self.take(job)

    def finished_elsewhere(self, job_id: str) -> None:
        """Another process finished a job: wake the long-polls waiting for it here."""
        if self.waiters.waiting(job_id) and job_id not in self._live:
            asyncio.get_running_loop().create_task(self._wake_waiters([job_id]))

    def recheck_waiters(self) -> None:
        """After a reconnection: jobs waited on here may have finished while messages could not arrive."""
        ids = [job_id for job_id in self.waiters.waited_ids() if job_id not in self._live]
        if ids:
            asyncio.get_running_loop().create_task(self._wake_waiters(ids))

    async def _wake_waiters(self, ids: list[str]) -> None:
        with contextlib.suppress(Unavailable):
            for job in await self.store.get_many(ids):
                if job.final:
                    self.waiters.wake(job)

    def on_remote(self, event: str, handler: Callable[[str], None]) -> None:
        """Hear of an event published by the processes sharing the store (external.py: `queued`, `xlease`)."""
        self._remote[event] = handler

    def remote_event(self, event: str, payload: str) -> None:
        handler = self._remote.get(event)
        if handler is not None:
            handler(payload)

    def cancel_here(self, job_id: str) -> None:
        """A cancel asked on another process, for a job running here: it ends cancelled after this attempt."""
        job = self._live.get(job_id)
        if job is not None and job.status is Status.RUNNING:
            self._cancel_after.add(job_id)

    # --- running ---------------------------------------------------------------------------------------------
    async def _run(self, job: Job, worker: int) -> None:
        job.begin_attempt(worker, self.node, self.clock())
        self.metrics.started(job)
        self.store.save_soon(job)
        # The start is logged at debug: at info, one line per attempt (its end) keeps logging off the hot path.
        log.debug(
            "job %s running attempt=%d worker=%d late_ms=%.1f",
            job.id,
            job.attempts,
            worker,
            (job.started_at or 0) * 1000 - job.run_at * 1000,
        )
        runner = self.runners.get(job.method)
        try:
            if runner is None:
                outcome = Outcome(ok=False, final=True, error=f"{job.method} jobs cannot run on this poulpe")
            else:
                outcome = await runner.run(job, job.attempts, job.timeout or self.job_timeout)
        except asyncio.CancelledError:
            await self._put_back(job)
            raise
        except Exception as exc:
            log.exception("runner for %s failed on job %s", job.method, job.id)
            outcome = Outcome(ok=False, error=f"internal error: {type(exc).__name__}")
        # The worker is free as soon as the outcome is decided; storing it (one group commit) and waking the
        # waiters happen in a task of their own, which a shutdown waits for.
        self._decide(job, outcome)
        self.metrics.ended(job)
        recording = asyncio.get_running_loop().create_task(self._record(job))
        self._recording.add(recording)
        recording.add_done_callback(self._recording.discard)

    async def _put_back(self, job: Job) -> None:
        """An attempt cut short by shutdown: the job goes back to queued and runs again after a restart."""
        job.end_attempt(False, INTERRUPTED, self.clock())
        job.status = Status.QUEUED
        self._live.pop(job.id, None)
        with contextlib.suppress(Exception):
            await self.store.save(job)
        log.info("job %s put back attempt=%d (shutdown)", job.id, job.attempts)

    def _decide(self, job: Job, outcome: Outcome) -> None:
        """The job's next state from an attempt's outcome, by its retry policy."""
        now = self.clock()
        job.end_attempt(outcome.ok, outcome.error, now)
        job.result = outcome.result
        policy = job.policy(self.default_retry)
        if outcome.ok:
            job.status = Status.SUCCEEDED
        else:
            job.failures += 1
            if job.id in self._cancel_after:
                job.status = Status.CANCELLED
            elif outcome.final or job.failures >= policy.max_attempts:
                job.status = Status.DEAD
            else:
                job.status = Status.RETRYING
                job.run_at = now + policy.delay_before_retry(job.failures, outcome.retry_after)
        self._cancel_after.discard(job.id)
        if job.final:
            job.finished_at = now

    async def _record(self, job: Job) -> None:
        """Store the decided state (dead letter first), then tell the scheduler and the waiters."""
        if job.status is Status.DEAD:
            await self._write_dead_letter(job)
        if not await self._store_outcome(job):
            return
        self._live.pop(job.id, None)
        ended = job.history[-1] if job.history else None
        elapsed = ((ended.finished_at or ended.started_at) - ended.started_at) * 1000 if ended else 0.0
        log.info(
            "job %s %s attempt=%d worker=%s elapsed_ms=%.1f%s",
            job.id,
            job.status,
            job.attempts,
            ended.worker if ended else None,
            elapsed,
            f" error={job.error!r}" if job.error else "",
        )
        if job.status is Status.RETRYING:
            self.feed.schedule(job)
        if job.final:
            self.waiters.notify(job)

    async def _store_outcome(self, job: Job) -> bool:
        """Save an attempt's outcome, retrying while the store is away (a shutdown gives up after --grace)."""
        delay = 0.1
        while True:
            try:
                await self.store.save(job)
                return True
            except NotHeld:  # our lease ran out and another process took the job: its outcome wins
                self._live.pop(job.id, None)
                log.warning("job %s: outcome of attempt %d dropped, another process holds it", job.id, job.attempts)
                return False
            except Unavailable as exc:
                log.warning("job %s: its outcome waits for the store: %s", job.id, exc.message)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _write_dead_letter(self, job: Job) -> None:
        await self.dead_jobs.bury(job)  # never raises: a letter the directory refuses is owed and written later

    # --- queries and commands --------------------------------------------------------------------------------
    async def get(self, job_id: str) -> Job | None:
        """The job's freshest state, or None when unknown or expired (--result_ttl)."""
        live = self._live.get(job_id)
        if live is not None and not live.final:  # final but still in _live: _record() has not stored it yet
            return live
        job = await self.store.get(job_id)
        if job is not None and job.final and (job.finished_at or 0) + self.result_ttl < self.clock():
            return None
        return job

    async def wait(self, job_id: str, timeout: float) -> Job | None:  # noqa: ASYNC109 (a long-poll's own limit)
        """The job once final, or its state when `timeout` passes first (or poulpe drains); None when unknown."""
        if timeout <= 0 or not self.accepting:
            return await self.get(job_id)
        fut = self.waiters.subscribe(job_id)
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
            self.waiters.unsubscribe(job_id, fut)
        return await self.get(job_id)

    async def cancel(self, job_id: str) -> Job:
        job = await self.get(job_id)
        if job is None:
            raise NotFound(f"no job with id {job_id}")
        if job.status is Status.RUNNING:
            if job_id in self._live:
                self._cancel_after.add(job_id)
            elif isinstance(self.feed, SharedFeed):  # it runs on another process: that one cancels it
                await self.feed.store.request_cancel(job_id)
            raise Conflict(f"job {job_id} is running: it will be cancelled after this attempt unless it succeeds")
        if job.status in FINAL:
            raise Conflict(f"job {job_id} is already {job.status}")
        self._cancelling.add(job_id)
        try:
            self.workers.discard(job_id)
            self._live.pop(job_id, None)
            job.status, job.finished_at = Status.CANCELLED, self.clock()
            await self.store.save(job)
        finally:
            self._cancelling.discard(job_id)
        log.info("job %s cancelled attempt=%d", job.id, job.attempts)
        self.waiters.notify(job)
        return job

    async def retry_dead(self, job_id: str) -> Job:
        """Run a dead job again with fresh attempts, from the store's record (or its letter once the store forgot
        it). The job is stored and scheduled first; its letter goes after, now or later (deadjobs.py)."""
        if not self.accepting:
            raise Unavailable("poulpe is shutting down")
        job = await self.dead_jobs.find(job_id)
        if job is None:
            current = await self.store.get(job_id)
            if current is not None and not current.final:
                raise Conflict(f"job {job_id} is {current.status} already")
            raise NotFound(f"no dead job with id {job_id}")
        job.status, job.failures, job.run_at = Status.QUEUED, 0, self.clock()
        job.finished_at, job.error, job.result = None, None, None
        await self.store.save(job)
        log.info("job %s queued again from the dead letters attempt=%d", job.id, job.attempts)
        self._enqueue(job)
        self.waiters.queued([(job, False)])  # external workers (external.py)
        await self.dead_jobs.letter_gone(job_id)
        return job

    async def sys_info(self, cap: int = 1000) -> dict[str, Any]:
        running = [job.id for job in self.workers.running if job is not None]
        delayed = await self.feed.delayed(cap + 1)
        failed = await self.store.ids(Status.DEAD, cap + 1)  # ids from the index: no dead record is decoded
        today = time.strftime("%Y-%m-%d", time.gmtime(self.clock()))
        return {
            "workers": [
                {"id": n, "running": job.id if job else None, "queue": self.workers.only_for(n)}
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
                await self.dead_jobs.before_purge(self.clock() - self.result_ttl)  # an owed letter outlives the TTL
                purged = await self.store.purge(self.clock() - self.result_ttl)
                if purged:
                    log.info("purged %d expired results", purged)
            except Exception as exc:
                log.warning("purging expired results failed: %s", exc)

    # --- external workers (poulpe/external.py) -----------------------------------------------------------------
    async def finish_external(self, job: Job, outcome: Outcome, holder: str) -> bool:
        """End a leased QUEUE job's attempt with its worker's report (or its lease's expiry): the same decision as
        a worker's attempt (retry policy, dead letter, waiters). Stored only if `holder` still holds the attempt;
        False, and nothing changed, otherwise."""
        self._decide(job, outcome)
        job.lease_holder = job.lease_until = None
        if job.status is Status.DEAD:
            await self._write_dead_letter(job)
        if not await self.store.save_if_held(job, holder):
            if job.status is Status.DEAD:
                # another process may have ended the same lease first, with the same dead letter: keep it then
                current = await self.store.get(job.id)
                if current is None or current.status is not Status.DEAD:
                    await self.dead_jobs.letter_gone(job.id)
            return False
        self.metrics.ended(job)
        log.info(
            "job %s %s attempt=%d worker=%s%s",
            job.id,
            job.status,
            job.attempts,
            holder,
            f" error={job.error!r}" if job.error else "",
        )
        if job.final:
            self.waiters.notify(job)
        return True


def check_page(page: int, size: int) -> None:
    if page < 1 or page > 1_000_000:
        raise BadRequest("page must be between 1 and 1000000", "page")
    if not 1 <= size <= 1000:
        raise BadRequest("size must be between 1 and 1000", "size")

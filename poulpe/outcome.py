"""One attempt of a job, from the ready structure to its told outcome: the worker's `Attempt` pulls the job, runs
its runner under its timeout, and hands the outcome to the finish step, which makes it the job's next state, stores
it, then tells it. The pool of worker tasks (workers.py) only starts and drains them: it never holds a job.

The finish step is one path for poulpe's own workers and for external workers' reports: decide by the retry policy,
write the dead letter (before the job is marked dead, so a crash in between re-runs the job rather than losing its
letter), store, then schedule a retry or publish `JobFinal` (long-polls and `wait` have it first, then callbacks and
Kafka results).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Protocol

from poulpe.alerts import Alerts
from poulpe.chains import Chains
from poulpe.deadjobs import DeadJobs
from poulpe.deadlines import Deadlines
from poulpe.dispatch.events import Events, JobFinal
from poulpe.dispatch.ready import Ready
from poulpe.errors import NotHeld, Unavailable
from poulpe.job import INTERRUPTED, Job, Method, RetryPolicy, Status
from poulpe.metrics import Metrics
from poulpe.runners import Outcome, Runner
from poulpe.store.base import Store
from poulpe.tracing import Spans

log = logging.getLogger("poulpe.jobs")
workers_log = logging.getLogger("poulpe.workers")


def _settle(group: asyncio.Future[None]) -> None:
    if not group.done():
        group.set_result(None)


class Schedule(Protocol):
    def schedule(self, job: Job) -> None: ...


class Finish:
    def __init__(
        self,
        store: Store,
        dead_jobs: DeadJobs,
        ready: Ready,
        feed: Schedule,
        events: Events,
        metrics: Metrics,
        *,
        default_retry: RetryPolicy,
        clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.dead_jobs = dead_jobs
        self.ready = ready
        self.feed = feed
        self.events = events
        self.metrics = metrics
        self.default_retry = default_retry
        self.clock = clock
        self._recording: set[asyncio.Task[None]] = set()
        self._ended: list[Job] = []  # decided during this loop iteration, recorded together
        self.chains: Chains | None = None  # a final job's children, written with its final state (chains.py)
        self.batch_job_ended: Callable[[], None] = lambda: None  # a batch's job is final: its end may be owed
        self._group: asyncio.Future[None] | None = None  # done once that group's record is over

    def began(self, job: Job) -> None:
        """A worker's attempt began (`job.begin_attempt`): its start is stored without waiting, and counted."""
        if job.started_at is not None:
            self.metrics.started(job.started_at - job.run_at)
        self.store.save_soon(job)

    def attempt_ended(self, job: Job, outcome: Outcome) -> asyncio.Future[None]:
        """A worker's attempt ended. The worker is free as soon as the outcome is decided; storing it (one group
        commit) and telling the others happen in a task of their own, which a shutdown waits for: one task for
        every outcome decided in the same loop iteration, not one per job. Returns a future done once that group's
        record is over (stored, or handed to the store's retries), which the worker's attempt after next waits
        for (workers.py)."""
        self.decide(job, outcome)
        self._count(job)
        if self._group is None:
            loop = asyncio.get_running_loop()
            loop.call_soon(self._record_ended)
            self._group = loop.create_future()
        self._ended.append(job)
        return self._group

    def _record_ended(self) -> None:
        jobs, self._ended = self._ended, []
        group, self._group = self._group, None
        if jobs:
            self._track(self._record_many(jobs), group)
        elif group is not None:
            group.set_result(None)

    def _track(self, coro: Coroutine[Any, Any, None], group: asyncio.Future[None] | None = None) -> None:
        recording = asyncio.get_running_loop().create_task(coro)
        self._recording.add(recording)
        recording.add_done_callback(self._recording.discard)
        if group is not None:  # however the record ends (a shutdown may cancel it): nobody waits for ever
            recording.add_done_callback(lambda _: _settle(group))

    async def put_back(self, job: Job) -> None:
        """An attempt cut short by shutdown: the job goes back to queued and runs again after a restart."""
        job.end_attempt(False, INTERRUPTED, self.clock())
        job.status = Status.QUEUED
        self.ready.held.pop(job.id, None)
        with contextlib.suppress(Exception):
            await self.store.save(job)
        log.info("job %s put back attempt=%d (shutdown)", job.id, job.attempts)

    async def wait_recorded(self, grace: float) -> None:
        """Shutdown: outcomes still being stored get `grace` seconds (at least one)."""
        if self._ended:
            self._record_ended()
        if self._recording:
            _, late = await asyncio.wait(self._recording, timeout=max(grace, 1.0))
            for task in late:  # the store is away: these outcomes are lost, their jobs run again (at least once)
                task.cancel()

    def decide(self, job: Job, outcome: Outcome) -> None:
        """The job's next state from an attempt's outcome, by its retry policy."""
        now = self.clock()
        job.end_attempt(outcome.ok, outcome.error, now)
        job.result = outcome.result
        policy = job.policy(self.default_retry)
        if outcome.ok:
            job.status = Status.SUCCEEDED
        else:
            job.failures += 1
            if job.id in self.ready.cancel_after:
                job.status = Status.CANCELLED
            elif outcome.final or job.failures >= policy.max_attempts:
                job.status = Status.DEAD
            else:
                run_at = now + policy.delay_before_retry(job.failures, outcome.retry_after)
                if policy.retry_allowed(job.first_started_at, run_at):
                    job.status, job.run_at = Status.RETRYING, run_at
                else:  # retry.max_duration: the budget is spent, the job ends now
                    job.status = Status.DEAD
                    job.error = f"{outcome.error}; no retry: retry.max_duration ({policy.max_duration:g} s) spent"
        self.ready.cancel_after.discard(job.id)
        if job.final:
            job.finished_at = now

    def _count(self, job: Job) -> None:
        """The decided attempt in the metrics, as numbers: its duration, and what became of the job."""
        last = job.history[-1] if job.history else None
        seconds = last.finished_at - last.started_at if last is not None and last.finished_at is not None else None
        failed = last is not None and last.ok is False
        self.metrics.ended(job.method, job.status, seconds, failed=failed)  # a StrEnum: its own text

    async def _record_many(self, jobs: list[Job]) -> None:
        """Store the decided states together (dead letters first), then schedule retries or tell of final states.
        A job the store could not take now is retried on its own (`_record`)."""
        if any(job.final and (job.then or job.on_failure) for job in jobs):  # written with its children, on its own
            for job in [job for job in jobs if job.final and (job.then or job.on_failure)]:
                self._track(self._record(job))
            jobs = [job for job in jobs if not (job.final and (job.then or job.on_failure))]
        dead = [job for job in jobs if job.status is Status.DEAD]
        if dead:
            await asyncio.gather(*(self.write_dead_letter(job) for job in dead))
        try:
            answers = await self.store.save_many(jobs)
        except Unavailable:
            answers = [Unavailable("the store is away")] * len(jobs)
        for job, answer in zip(jobs, answers, strict=True):
            if answer is None:
                self._recorded(job)
            elif isinstance(answer, NotHeld):
                self._not_held(job)
            elif isinstance(answer, Unavailable):
                self._track(self._record(job, letter_written=True))
            else:
                log.error("job %s: storing its outcome failed: %r", job.id, answer)

    async def _record(self, job: Job, *, letter_written: bool = False) -> None:
        """Store the decided state (dead letter first), then schedule the retry or tell of the final state."""
        if job.status is Status.DEAD and not letter_written:
            await self.write_dead_letter(job)
        if await self._store_outcome(job):
            self._recorded(job)

    def _recorded(self, job: Job) -> None:
        """The outcome is stored: log its one line, then schedule the retry or tell of the final state."""
        self.ready.held.pop(job.id, None)
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
            self.events.emit(JobFinal(job))
            if job.batch is not None:
                self.batch_job_ended()

    async def _store_outcome(self, job: Job) -> bool:
        """Save an attempt's outcome, retrying while the store is away (a shutdown gives up after --grace)."""
        delay = 0.1
        children = self._children(job)
        while True:
            try:
                if children:
                    self._started(await self.store.save_final(job, children))
                else:
                    await self.store.save(job)
                return True
            except NotHeld:
                self._not_held(job)
                return False
            except Unavailable as exc:
                log.warning("job %s: its outcome waits for the store: %s", job.id, exc.message)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _not_held(self, job: Job) -> None:
        """Our lease ran out and another process took the job: its outcome wins."""
        self.ready.held.pop(job.id, None)
        log.warning("job %s: outcome of attempt %d dropped, another process holds it", job.id, job.attempts)

    def _children(self, job: Job) -> list[Job]:
        """A final job's children (SPEC 10.3), written with its final state."""
        if self.chains is None or not job.final or not (job.then or job.on_failure):
            return []
        return self.chains.children_of(job)

    def _started(self, stored: list[tuple[Job, bool]]) -> None:
        if self.chains is not None:
            self.metrics.accepted([child.method.value for child, duplicate in stored if not duplicate])
            self.chains.started(stored, self.feed.schedule, self.events)

    async def write_dead_letter(self, job: Job) -> None:
        await self.dead_jobs.bury(job)  # never raises: a letter the directory refuses is owed and written later

    async def external(self, job: Job, outcome: Outcome, holder: str) -> bool:
        """End a leased QUEUE job's attempt with its worker's report (or its lease's expiry): the same decision as
        a worker's attempt (retry policy, dead letter, events). Stored only if `holder` still holds the attempt;
        False, and nothing changed, otherwise."""
        self.decide(job, outcome)
        job.lease_holder = job.lease_until = None
        if job.status is Status.DEAD:
            await self.write_dead_letter(job)
        children = self._children(job)
        if not await self.store.save_if_held(job, holder, children):
            if job.status is Status.DEAD:
                # another process may have ended the same lease first, with the same dead letter: keep it then
                current = await self.store.get(job.id)
                if current is None or current.status is not Status.DEAD:
                    await self.dead_jobs.letter_gone(job.id)
            return False
        self._count(job)
        if children:  # the children this save wrote carry its acceptance numbers; a known id keeps its own
            mine = {child.id: child.seq for child in children}
            stored = await self.store.get_many(list(mine))
            self._started([(child, child.seq != mine[child.id]) for child in stored])
        log.info(
            "job %s %s attempt=%d worker=%s%s",
            job.id,
            job.status,
            job.attempts,
            holder,
            f" error={job.error!r}" if job.error else "",
        )
        if job.final:
            self.events.emit(JobFinal(job))
            if job.batch is not None:
                self.batch_job_ended()
        return True


class Attempt:
    """Attempts on this process's workers: each worker (`work(n)`) pulls its next job from the ready structure,
    marks the attempt running, runs its runner under its timeout, and hands the outcome to the finish step, which
    stores both the attempt's start and its end: the store has one writer of attempts."""

    def __init__(
        self,
        ready: Ready,
        runners: Mapping[Method, Runner],
        finish: Finish,
        *,
        node: str,
        job_timeout: float,
        clock: Callable[[], float],
    ) -> None:
        self.ready = ready
        self.runners = runners
        self.finish = finish
        self.node = node
        self.job_timeout = job_timeout
        self.clock = clock
        self.running: list[Job | None] = [None] * ready.workers  # the job each worker runs, by number
        self.spans: Spans | None = None  # tracing on (--otlp_endpoint): one span per attempt
        # per worker, the records of its last two outcomes: see `run`
        self._records: dict[int, tuple[asyncio.Future[None] | None, asyncio.Future[None] | None]] = {}
        self.alerts: Alerts | None = None  # `late` at the start, `slow` while it runs (alerts.py)
        self.deadlines: Deadlines | None = None  # a job past its start deadline ends dead here, unstarted

    async def work(self, worker: int) -> None:
        """Worker `worker`: one attempt after another, asking for work when it is free, until the ready structure
        stops. Nothing calls a worker back."""
        while True:
            job = await self.ready.next(worker)
            if job is None:
                return
            self.running[worker] = job
            try:
                await self.run(job, worker)
            except asyncio.CancelledError:
                raise
            except Exception:
                workers_log.exception("worker %d failed on job %s", worker, job.id)
            finally:
                self.running[worker] = None
                self.ready.ended(worker)

    async def run(self, job: Job, worker: int) -> None:
        # A worker runs ahead of the store by one outcome at most: it begins an attempt once its outcome before last
        # is recorded. So a kill -9 finds at most two attempts per worker whose outcome is not stored (the one
        # running, the last one decided), and only those run again after a restart (docs/design.md, "Order").
        before_last, last = self._records.get(worker, (None, None))
        if before_last is not None and not before_last.done():
            await before_last
        if job.deadline is not None and self.deadlines is not None and self.deadlines.passed(job):
            await self.deadlines.end(job)
            return
        job.begin_attempt(worker, self.node, self.clock())
        self.finish.began(job)
        # The start is logged at debug: at info, one line per attempt (its end) keeps logging off the hot path.
        if log.isEnabledFor(logging.DEBUG):  # its arguments are not even worked out at info
            log.debug(
                "job %s running attempt=%d worker=%d late_ms=%.1f",
                job.id,
                job.attempts,
                worker,
                (job.started_at or 0) * 1000 - job.run_at * 1000,
            )
        runner = self.runners.get(job.method)
        slow = self.alerts.attempt_began(job) if self.alerts is not None else None
        spans = self.spans
        span = spans.begin(job) if spans is not None else None  # ended on every way out of the `try` below
        try:
            if runner is None:
                outcome = Outcome(ok=False, final=True, error=f"{job.method} jobs cannot run on this poulpe")
            else:
                outcome = await runner.run(job, job.attempts, job.timeout or self.job_timeout)
        except asyncio.CancelledError:
            if slow is not None:
                slow.cancel()
            if spans is not None:
                spans.end(span, job, None)
            await self.finish.put_back(job)
            raise
        except Exception as exc:
            log.exception("runner for %s failed on job %s", job.method, job.id)
            outcome = Outcome(ok=False, error=f"internal error: {type(exc).__name__}")
        if slow is not None:
            slow.cancel()
        self._records[worker] = (last, self.finish.attempt_ended(job, outcome))
        if spans is not None:
            spans.end(span, job, outcome)

"""Workers 0..N-1 (numbered as in the Rust poulpe): each pulls its next job from the ready structure, runs one
attempt, and hands the outcome to the finish step. Nothing calls a worker back: it asks for work when it is free.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

from poulpe.alerts import Alerts
from poulpe.deadlines import Deadlines
from poulpe.dispatch.ready import Ready
from poulpe.job import Job, Method
from poulpe.outcome import Finish
from poulpe.runners import Outcome, Runner
from poulpe.tracing import Spans

log = logging.getLogger(__name__)
jobs_log = logging.getLogger("poulpe.jobs")
RunJob = Callable[[Job, int], Awaitable[None]]


class Workers:
    def __init__(self, ready: Ready, run_job: RunJob) -> None:
        self.ready = ready
        self.count = ready.workers
        self.running: list[Job | None] = [None] * self.count
        self._run_job = run_job
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._work(n), name=f"poulpe-worker-{n}") for n in range(self.count)]

    async def stop(self, grace: float) -> list[Job]:
        """Take no more jobs, give running attempts `grace` seconds, then cancel them.

        Returns the jobs that were still waiting in the ready structure (they are stored as queued already).
        """
        left = self.ready.stop()
        busy = [t for t, job in zip(self._tasks, self.running, strict=True) if job is not None]
        if busy:
            _, late = await asyncio.wait(busy, timeout=grace)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        return left

    async def _work(self, worker: int) -> None:
        while True:
            job = await self.ready.next(worker)
            if job is None:
                return
            self.running[worker] = job
            try:
                await self._run_job(job, worker)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("worker %d failed on job %s", worker, job.id)
            finally:
                self.running[worker] = None
                self.ready.ended(worker)


class Attempt:
    """One attempt of a job on a worker: mark it running, run its runner under its timeout, hand on the outcome.
    The finish step (outcome.py) stores both the attempt's start and its end: the store has one writer of attempts."""

    def __init__(
        self,
        runners: Mapping[Method, Runner],
        finish: Finish,
        *,
        node: str,
        job_timeout: float,
        clock: Callable[[], float],
    ) -> None:
        self.runners = runners
        self.finish = finish
        self.node = node
        self.job_timeout = job_timeout
        self.clock = clock
        self.spans: Spans | None = None  # tracing on (--otlp_endpoint): one span per attempt
        # per worker, the records of its last two outcomes: see `run`
        self._records: dict[int, tuple[asyncio.Future[None] | None, asyncio.Future[None] | None]] = {}
        self.alerts: Alerts | None = None  # `late` at the start, `slow` while it runs (alerts.py)
        self.deadlines: Deadlines | None = None  # a job past its start deadline ends dead here, unstarted

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
        if jobs_log.isEnabledFor(logging.DEBUG):  # its arguments are not even worked out at info
            jobs_log.debug(
                "job %s running attempt=%d worker=%d late_ms=%.1f",
                job.id,
                job.attempts,
                worker,
                (job.started_at or 0) * 1000 - job.run_at * 1000,
            )
        runner = self.runners.get(job.method)
        spans = self.spans
        span = spans.begin(job) if spans is not None else None
        slow = self.alerts.attempt_began(job) if self.alerts is not None else None
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
            jobs_log.exception("runner for %s failed on job %s", job.method, job.id)
            outcome = Outcome(ok=False, error=f"internal error: {type(exc).__name__}")
        if slow is not None:
            slow.cancel()
        self._records[worker] = (last, self.finish.attempt_ended(job, outcome))
        if spans is not None:
            spans.end(span, job, outcome)

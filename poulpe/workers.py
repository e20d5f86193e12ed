"""Workers 0..N-1 (numbered as in the Rust poulpe): one task each, started and drained here. What a worker does with
a job is the attempt's (outcome.py, `Attempt.work`): it pulls its next job from the ready structure, runs it and
hands the outcome to the finish step. The pool never holds a job; nothing calls a worker back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from poulpe.dispatch.ready import Ready
from poulpe.job import Job


class Attempts(Protocol):
    """What the pool runs (outcome.Attempt): a worker's loop, and the job each worker runs (None: idle)."""

    @property
    def running(self) -> Sequence[Job | None]: ...

    async def work(self, worker: int) -> None: ...


class Workers:
    def __init__(self, ready: Ready, attempts: Attempts) -> None:
        self.ready = ready
        self.count = ready.workers
        self.attempts = attempts
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def running(self) -> Sequence[Job | None]:
        """The job each worker runs, by worker number (None: idle)."""
        return self.attempts.running

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self.attempts.work(n), name=f"poulpe-worker-{n}") for n in range(self.count)]

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

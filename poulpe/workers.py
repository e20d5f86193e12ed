"""Workers 0..N-1 (numbered as in the Rust poulpe) and the routing of ready jobs to them by `cc`.

A job without `cc` goes to the first free worker; a job with `cc` waits for a free one among those it names.
Ready jobs wait in one queue per `cc` set; a worker that frees up takes the earliest job (due time, then
acceptance order) among the queues it may serve. Workers sleep on a future and wake when work is handed over.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from poulpe.job import Job

log = logging.getLogger(__name__)
RunJob = Callable[[Job, int], Awaitable[None]]


class Workers:
    def __init__(self, count: int, run_job: RunJob, *, on_free: Callable[[], None] = lambda: None) -> None:
        self.count = count
        self.running: list[Job | None] = [None] * count
        self._run_job = run_job
        self._on_free = on_free
        self._queues: dict[tuple[int, ...], deque[Job]] = {}
        self._idle: dict[int, asyncio.Future[Job | None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    @property
    def ready(self) -> int:
        return sum(len(q) for q in self._queues.values())

    @property
    def busy(self) -> int:
        return sum(job is not None for job in self.running)

    def only_for(self, worker: int) -> int:
        """Jobs waiting that only this worker may take (sys_info's per-worker queue)."""
        return len(self._queues.get((worker,), ()))

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._work(n), name=f"poulpe-worker-{n}") for n in range(self.count)]

    def push(self, job: Job) -> None:
        """Hand a ready job to a free worker it may run on, or queue it."""
        key = job.cc
        if not self._queues.get(key):
            worker = self._first_idle(key)
            if worker is not None:
                self._idle.pop(worker).set_result(job)
                return
        self._queues.setdefault(key, deque()).append(job)

    def discard(self, job_id: str) -> Job | None:
        """Take a ready job back out (cancelled before it started)."""
        for queue in self._queues.values():
            for job in queue:
                if job.id == job_id:
                    queue.remove(job)
                    return job
        return None

    async def stop(self, grace: float) -> list[Job]:
        """Take no more jobs, give running attempts `grace` seconds, then cancel them.

        Returns the jobs that were still waiting in the ready queues (they are stored as queued already).
        """
        self._stopping = True
        for fut in self._idle.values():
            fut.set_result(None)
        self._idle.clear()
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
        left = [job for queue in self._queues.values() for job in queue]
        self._queues.clear()
        return left

    def _first_idle(self, key: tuple[int, ...]) -> int | None:
        if not self._idle:
            return None
        if not key:
            return min(self._idle)
        return next((w for w in key if w in self._idle), None)

    def _next_for(self, worker: int) -> Job | None:
        best: deque[Job] | None = None
        for key, queue in self._queues.items():
            if queue and (not key or worker in key):
                head = queue[0]
                if best is None or (head.run_at, head.seq) < (best[0].run_at, best[0].seq):
                    best = queue
        return best.popleft() if best is not None else None

    async def _work(self, worker: int) -> None:
        while not self._stopping:
            job = self._next_for(worker)
            if job is None:
                fut: asyncio.Future[Job | None] = asyncio.get_running_loop().create_future()
                self._idle[worker] = fut
                self._on_free()
                job = await fut
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

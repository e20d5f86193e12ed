"""Per-job futures: long-polls, `wait` and WebSocket pushes wake on a job's completion, never by polling."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Sequence

from poulpe.job import Job, Method

Listener = Callable[[Job], None]
QueueListener = Callable[[list[Job]], None]


class Waiters:
    def __init__(self) -> None:
        self._futures: defaultdict[str, set[asyncio.Future[Job | None]]] = defaultdict(set)
        self._listeners: set[Listener] = set()
        self._queue_listeners: set[QueueListener] = set()

    def __len__(self) -> int:
        return sum(len(futures) for futures in self._futures.values())

    def subscribe(self, job_id: str) -> asyncio.Future[Job | None]:
        """A future set when the job becomes final (or None when poulpe drains). Subscribe before reading the
        job's state, so a completion between the read and the wait is not missed."""
        fut: asyncio.Future[Job | None] = asyncio.get_running_loop().create_future()
        self._futures[job_id].add(fut)
        return fut

    def unsubscribe(self, job_id: str, fut: asyncio.Future[Job | None]) -> None:
        waiting = self._futures.get(job_id)
        if waiting is not None:
            waiting.discard(fut)
            if not waiting:
                del self._futures[job_id]

    def waiting(self, job_id: str) -> bool:
        return job_id in self._futures

    def waited_ids(self) -> list[str]:
        return list(self._futures)

    def notify(self, job: Job) -> None:
        """A job became final in this process: wake its waiters and tell the listeners."""
        self.wake(job)
        for listener in list(self._listeners):
            listener(job)

    def wake(self, job: Job) -> None:
        """Wake the futures only (a job that became final in another process sharing the store)."""
        for fut in self._futures.pop(job.id, ()):
            if not fut.done():
                fut.set_result(job)

    def release_all(self) -> None:
        """Answer every waiter now (shutdown): they report the job's current state."""
        for futures in self._futures.values():
            for fut in futures:
                if not fut.done():
                    fut.set_result(None)

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` with every job that becomes final; returns the function that stops it."""
        self._listeners.add(listener)
        return lambda: self._listeners.discard(listener)

    def listen_queued(self, listener: QueueListener) -> Callable[[], None]:
        """Call `listener` with the QUEUE jobs stored new or queued again (external workers waiting for work)."""
        self._queue_listeners.add(listener)
        return lambda: self._queue_listeners.discard(listener)

    def queued(self, stored: Sequence[tuple[Job, bool]]) -> None:
        """(job, duplicate) pairs just stored: the new QUEUE jobs among them go to the queue listeners."""
        if not self._queue_listeners:
            return
        jobs = [job for job, duplicate in stored if not duplicate and job.method is Method.QUEUE]
        if jobs:
            for listener in list(self._queue_listeners):
                listener(jobs)

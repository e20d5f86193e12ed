"""Per-job futures: long-polls, `wait` and WebSocket pushes wake on a job's completion, never by polling.

The manager wakes them on the `JobFinal` event (dispatch/events.py), and on another process's word that a job ended.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

from poulpe.dispatch.events import JobFinal
from poulpe.job import Job


class Waiters:
    def __init__(self) -> None:
        self._futures: defaultdict[str, set[asyncio.Future[Job | None]]] = defaultdict(set)

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

    def wake(self, job: Job) -> None:
        """A job became final (here, or in another process sharing the store): wake its futures."""
        for fut in self._futures.pop(job.id, ()):
            if not fut.done():
                fut.set_result(job)

    def on_final(self, event: JobFinal) -> None:
        """The event bus's JobFinal (outcome.py): the job's final state is stored, its waiters can have it."""
        self.wake(event.job)

    def release_all(self) -> None:
        """Answer every waiter now (shutdown): they report the job's current state."""
        for futures in self._futures.values():
            for fut in futures:
                if not fut.done():
                    fut.set_result(None)

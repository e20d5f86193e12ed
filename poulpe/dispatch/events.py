"""A small typed event bus: parts that react to a job's life subscribe here instead of being called by name.

Handlers run synchronously, in subscription order, on the event loop; a handler that raises is logged and the others
still run. Events from other processes sharing the store (Redis pub/sub) arrive here too, as their own types.

Long-polls, `wait` and WebSocket pushes wait for one job's end, never by polling: `final(job_id)` is a future the
bus sets with the job when its `JobFinal` is published, before any handler runs (or when another process's word
that it ended is checked, `finished`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from poulpe.job import Job

log = logging.getLogger(__name__)
E = TypeVar("E")


@dataclass(frozen=True, slots=True)
class JobFinal:
    """A job became final in this process, and its final state is stored."""

    job: Job


@dataclass(frozen=True, slots=True)
class JobsQueued:
    """QUEUE jobs were stored new or queued again: external workers may lease them."""

    jobs: list[Job]


@dataclass(frozen=True, slots=True)
class FinishedElsewhere:
    """Another process sharing the store finished this job."""

    job_id: str


@dataclass(frozen=True, slots=True)
class QueuedElsewhere:
    """Another process stored a QUEUE job of this task type."""

    kind: str


@dataclass(frozen=True, slots=True)
class LeaseSet:
    """An external worker's lease ends at `until` (set by any process): the expiry timer must fire by then."""

    until: float


@dataclass(frozen=True, slots=True)
class LeaseLost:
    """A job's lease ran out and this process took the job back: its process died, or its external worker went
    silent. The job's attempt counts as failed (alerts.py)."""

    job: Job


@dataclass(frozen=True, slots=True)
class LimitsChanged:
    """Keys' limits or the deployment-wide pause may have changed in the shared store: read them again."""


@dataclass(frozen=True, slots=True)
class Reconnected:
    """The link to the shared store's messages is back: messages sent meanwhile were missed."""


class Events:
    def __init__(self) -> None:
        self._handlers: defaultdict[type, list[Callable[[Any], None]]] = defaultdict(list)
        self._finals: defaultdict[str, set[asyncio.Future[Job | None]]] = defaultdict(set)

    def on(self, kind: type[E], handler: Callable[[E], None]) -> Callable[[], None]:
        """Call `handler` with every event of this type; returns the function that stops it."""
        self._handlers[kind].append(handler)

        def stop() -> None:
            if handler in self._handlers[kind]:
                self._handlers[kind].remove(handler)

        return stop

    def emit(self, event: object) -> None:
        if isinstance(event, JobFinal):  # its final state is stored: whoever waits for it has it first
            self.finished(event.job)
        for handler in list(self._handlers.get(type(event), ())):
            try:
                handler(event)
            except Exception:
                log.exception("a handler of %s failed", type(event).__name__)

    # --- one job's end: long-polls, `wait` and WebSocket pushes ----------------------------------------------
    def final(self, job_id: str) -> asyncio.Future[Job | None]:
        """A future set with the job once it is final (or with None when poulpe drains). Subscribe before reading
        the job's state, so a completion between the read and the wait is not missed."""
        fut: asyncio.Future[Job | None] = asyncio.get_running_loop().create_future()
        self._finals[job_id].add(fut)
        return fut

    def forget(self, job_id: str, fut: asyncio.Future[Job | None]) -> None:
        waiting = self._finals.get(job_id)
        if waiting is not None:
            waiting.discard(fut)
            if not waiting:
                del self._finals[job_id]

    def waited(self, job_id: str) -> bool:
        return job_id in self._finals

    def waited_ids(self) -> list[str]:
        return list(self._finals)

    def finished(self, job: Job) -> None:
        """The job is final (here, or in another process sharing the store): set the futures waiting for it."""
        for fut in self._finals.pop(job.id, ()):
            if not fut.done():
                fut.set_result(job)

    def release_all(self) -> None:
        """Answer every wait now (a drain): each reports the job's current state."""
        for futures in self._finals.values():
            for fut in futures:
                if not fut.done():
                    fut.set_result(None)

"""A small typed event bus: parts that react to a job's life subscribe here instead of being called by name.

Handlers run synchronously, in subscription order, on the event loop; a handler that raises is logged and the others
still run. Events from other processes sharing the store (Redis pub/sub) arrive here too, as their own types.
"""

from __future__ import annotations

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
class LimitsChanged:
    """Keys' limits or the deployment-wide pause may have changed in the shared store: read them again."""


@dataclass(frozen=True, slots=True)
class Reconnected:
    """The link to the shared store's messages is back: messages sent meanwhile were missed."""


class Events:
    def __init__(self) -> None:
        self._handlers: defaultdict[type, list[Callable[[Any], None]]] = defaultdict(list)

    def on(self, kind: type[E], handler: Callable[[E], None]) -> Callable[[], None]:
        """Call `handler` with every event of this type; returns the function that stops it."""
        self._handlers[kind].append(handler)

        def stop() -> None:
            if handler in self._handlers[kind]:
                self._handlers[kind].remove(handler)

        return stop

    def emit(self, event: object) -> None:
        for handler in list(self._handlers.get(type(event), ())):
            try:
                handler(event)
            except Exception:
                log.exception("a handler of %s failed", type(event).__name__)

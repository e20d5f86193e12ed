"""Attempts' time limits on one event loop, with one timer handle for all of them.

An attempt's limit is `asyncio.timeout`'s own steps: the task is cancelled when its time is up, and that cancellation
alone becomes the timeout (`Limit.expired`); any other (a shutdown) goes on. A timer handle per attempt (made, pushed on
the loop's heap, cancelled, later swept off it) cost about 1.5 µs of every HTTP call. Here, attempts of one timeout
expire in the order they began, so each timeout keeps its limits in a queue whose head expires first, and one handle
is set for the earliest head. An attempt that ends only marks its limit: nothing to cancel, and ended limits leave
their queue as they reach its head (or in one sweep once a long attempt at the head holds SWEEP of them behind it).
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from typing import Any

SWEEP = 1024  # limits a queue may hold (ended ones behind a running one) before the ended are swept out at once


class Limit:
    """One attempt's time limit: cancels its task once when the time is up, unless the attempt ended first."""

    __slots__ = ("cancelling", "ended", "fired", "task", "when")

    def __init__(self, task: asyncio.Task[Any], when: float) -> None:
        self.task = task
        self.when = when
        self.cancelling = task.cancelling()  # cancellations asked before the attempt began are not its timeout
        self.fired = False
        self.ended = False

    def end(self) -> None:
        """The attempt ended (however): its limit no longer fires."""
        self.ended = True

    def expired(self) -> bool:
        """Called on the attempt's CancelledError: whether this limit's cancellation, and no other, caused it."""
        return self.fired and self.task.uncancel() <= self.cancelling

    def _fire(self) -> None:
        self.ended = self.fired = True
        self.task.cancel()


class _Queue(deque[Limit]):
    """One timeout's limits, in the order their attempts began."""

    # the length at which its ended limits are swept out: twice what stayed at the last sweep, so that a queue of
    # SWEEP attempts all still running is not copied again at every start
    sweep_at = SWEEP


class Limits:
    """The limits of the attempts running on `loop`."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._queues: dict[float, _Queue] = {}  # by timeout, each in the order its attempts began
        self._handle: asyncio.TimerHandle | None = None  # set for the earliest head

    def start(self, timeout: float) -> Limit:
        """The running task's attempt begins, with `timeout` seconds to end."""
        task = asyncio.current_task(self.loop)
        assert task is not None
        limit = Limit(task, self.loop.time() + timeout)
        queue = self._queues.get(timeout)
        if queue is None:
            queue = self._queues[timeout] = _Queue()
        while queue and queue[0].ended:
            queue.popleft()
        if len(queue) >= queue.sweep_at:
            queue = self._queues[timeout] = _Queue(waiting for waiting in queue if not waiting.ended)
            queue.sweep_at = max(SWEEP, 2 * len(queue))
        queue.append(limit)
        handle = self._handle
        if handle is None or limit.when < handle.when():
            if handle is not None:
                handle.cancel()
            self._handle = self.loop.call_at(limit.when, self._check)
        return limit

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _check(self) -> None:
        """The earliest head's time: fire what is due, drop what ended, set the handle for the next head."""
        self._handle = None
        now = self.loop.time()
        first = math.inf
        for timeout, queue in list(self._queues.items()):
            while queue and (queue[0].ended or queue[0].when <= now):
                limit = queue.popleft()
                if not limit.ended:
                    limit._fire()
            if queue:
                first = min(first, queue[0].when)
            else:
                del self._queues[timeout]
        if first < math.inf:
            self._handle = self.loop.call_at(first, self._check)

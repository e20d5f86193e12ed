"""Due times: one heap and one loop timer armed for the earliest entry. Nothing polls.

Delayed jobs, retries, recovered jobs and cron fires all pass through here (on the embedded store: local.py). An
entry is the job's rank (order.py: due time, acceptance number, id), so a million waiting jobs fit in memory; the
job itself is read when it comes due.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Callable, Iterable

from poulpe.dispatch.order import Rank

Entry = Rank


class Timer:
    def __init__(
        self,
        on_due: Callable[[list[Entry]], None],
        *,
        room: Callable[[], int] = lambda: 1_000_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`on_due` gets due entries in due order; `room` caps how many it may get at once (back-pressure)."""
        self._on_due = on_due
        self._room = room
        self._clock = clock
        self._heap: list[Entry] = []
        self._timer: asyncio.TimerHandle | None = None
        self._armed_for: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __len__(self) -> int:
        return len(self._heap)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._arm()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._armed_for, self._loop = None, None, None

    def add(self, entry: Entry) -> None:
        heapq.heappush(self._heap, entry)
        if self._armed_for is None or entry[0] < self._armed_for:
            self._arm()

    def extend(self, entries: Iterable[Entry]) -> None:
        self._heap.extend(entries)
        heapq.heapify(self._heap)
        self._arm()

    def poke(self) -> None:
        """Room was made: hand over what is due now."""
        if self._heap and self._heap[0][0] <= self._clock():
            self._arm()

    def peek_ids(self, limit: int) -> list[str]:
        """Ids near the top of the heap (roughly the soonest), without sorting a million entries."""
        return [entry[2] for entry in self._heap[:limit]]

    def _arm(self) -> None:
        if self._loop is None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._heap:
            self._armed_for = None
            return
        due = self._heap[0][0]
        self._armed_for = due
        wait = max(0.0, due - self._clock())
        self._timer = self._loop.call_at(self._loop.time() + wait, self._fire)

    def _fire(self) -> None:
        self._timer, self._armed_for = None, None
        now = self._clock()
        room = self._room()
        due: list[Entry] = []
        while self._heap and self._heap[0][0] <= now and len(due) < room:
            due.append(heapq.heappop(self._heap))
        if due:
            self._on_due(due)
        if self._heap and (self._heap[0][0] > now or len(due) < room):
            self._arm()
        # else: no room; `poke` re-arms when workers free up

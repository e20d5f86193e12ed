"""A small in-memory history for the dashboard's charts and `GET /history`: one point a second for the last ten
minutes, one a minute for the last six hours.

Each point: jobs succeeded and attempts failed per second, lateness p50/p99 (from the lateness histogram's buckets,
as Prometheus's histogram_quantile reads them), due jobs waiting for a worker, and running jobs. It is sampled by
a timer from the metrics poulpe keeps anyway: nothing is added to a job's path. A restart starts an empty history.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter, Histogram

from poulpe.metrics import Metrics

SECONDS = 600  # points of one second: ten minutes
MINUTES = 360  # points of one minute: six hours
FIELDS = ("t", "done", "failed", "late_p50", "late_p99", "queued", "running")


def _total(counter: Counter) -> float:
    return sum(s.value for family in counter.collect() for s in family.samples if s.name.endswith("_total"))


def _buckets(histogram: Histogram) -> list[tuple[float, float]]:
    """(upper bound, cumulative count) of each bucket, +Inf last."""
    return [
        (float(s.labels["le"]), s.value)
        for family in histogram.collect()
        for s in family.samples
        if s.name.endswith("_bucket")
    ]


def quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """The q-quantile of cumulative buckets, interpolated inside its bucket (None without observations)."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound
            width = count - lower_count
            return lower_bound + (bound - lower_bound) * ((rank - lower_count) / width if width else 1.0)
        lower_bound, lower_count = bound, count
    return lower_bound


class History:
    def __init__(
        self,
        metrics: Metrics,
        *,
        queued: Callable[[], int],
        running: Callable[[], int],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.metrics = metrics
        self.queued = queued
        self.running = running
        self.clock = clock
        self.seconds: deque[list[float | None]] = deque(maxlen=SECONDS)
        self.minutes: deque[list[float | None]] = deque(maxlen=MINUTES)
        self._last: tuple[float, float, float, list[tuple[float, float]]] | None = None
        self._minute: tuple[float, float, float, list[tuple[float, float]]] | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._sample_forever(), name="poulpe-history")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _sample_forever(self) -> None:
        while True:
            await asyncio.sleep(1.0 - self.clock() % 1.0)  # on the second, so points line up across processes
            self.sample()

    def _read(self) -> tuple[float, float, float, list[tuple[float, float]]]:
        m = self.metrics
        return self.clock(), _total(m.jobs_succeeded), _total(m.attempts_failed), _buckets(m.lateness_seconds)

    def sample(self) -> None:
        """Take one point (the timer calls it every second; the minute points are every 60th)."""
        now = self._read()
        if self._last is not None:
            self.seconds.append(self._point(self._last, now))
        self._last = now
        if self._minute is None:
            self._minute = now
        elif now[0] - self._minute[0] >= 59.5:
            self.minutes.append(self._point(self._minute, now))
            self._minute = now

    def _point(
        self,
        before: tuple[float, float, float, list[tuple[float, float]]],
        now: tuple[float, float, float, list[tuple[float, float]]],
    ) -> list[float | None]:
        span = max(now[0] - before[0], 1e-6)
        late = [(bound, count - old) for (bound, count), (_, old) in zip(now[3], before[3], strict=True)]
        p50, p99 = quantile(0.5, late), quantile(0.99, late)
        return [
            round(now[0], 3),
            round((now[1] - before[1]) / span, 3),
            round((now[2] - before[2]) / span, 3),
            None if p50 is None else round(p50, 6),
            None if p99 is None else round(p99, 6),
            self.queued(),
            self.running(),
        ]

    def view(self) -> dict[str, Any]:
        """`GET /history`: column names, then rows of seconds and of minutes, oldest first."""
        return {"fields": list(FIELDS), "seconds": list(self.seconds), "minutes": list(self.minutes)}

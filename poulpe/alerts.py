"""Alerts (SPEC 10.6): a job started late, an attempt runs slow, a lease ran out, a job ended dead.

Each alert is raised at most once per job and type, counted (`poulpe_alerts_total`), kept in a short list for the
dashboard (`GET /alerts`) and, with --alert_url, POSTed there signed like a job's call. Delivery never blocks a
job: an alert goes into a bounded queue and a sender task posts it, retrying with backoff; a full queue drops the
alert (counted) rather than hold anything up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import aiohttp
import msgspec
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from poulpe.dispatch.events import Events, JobFinal, LeaseLost
from poulpe.job import Job, Status
from poulpe.outbound import signature
from poulpe.settings import Secret

log = logging.getLogger(__name__)
TYPES = ("late", "slow", "lease_lost", "dead")
QUEUE_CAP = 10_000  # alerts waiting for delivery; beyond that they are dropped (counted), never waited for
SENDING_CAP = 16  # deliveries in flight at once
SEEN_CAP = 200_000  # (job, type) pairs remembered for "at most once"; the oldest are forgotten first
RECENT_CAP = 100  # alerts the dashboard lists
RETRY_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)  # a delivery that fails is tried again after each of these
POST_TIMEOUT = 10.0


class Alerts:
    def __init__(
        self,
        *,
        url: str | None = None,
        signing_key: Secret | None = None,
        late_after: float | None = 60.0,
        slow_after: float | None = None,
        version: str = "0.1.0",
        retry_delays: Sequence[float] = RETRY_DELAYS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self.late_after = late_after
        self.slow_after = slow_after
        self.version = version
        self.retry_delays = tuple(retry_delays)
        self.clock = clock
        self.raised: Counter[str] = Counter({kind: 0 for kind in TYPES})
        self.delivered = 0
        self.undelivered = 0  # given up after every retry
        self.dropped = 0  # the queue was full
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_CAP)
        self._key = signing_key.reveal().encode() if signing_key else None
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_CAP)
        self._sending: set[asyncio.Task[None]] = set()
        self._sender: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._unlisten: list[Callable[[], None]] = []

    # --- lifecycle -------------------------------------------------------------------------------------------
    def start(self, events: Events) -> None:
        self._unlisten = [
            events.on(JobFinal, lambda event: self._on_final(event.job)),
            events.on(LeaseLost, lambda event: self.alert("lease_lost", event.job)),
        ]
        if self.url is not None:
            self._sender = asyncio.get_running_loop().create_task(self._send_forever(), name="poulpe-alerts")

    async def stop(self, grace: float = 2.0) -> None:
        """Stop listening; deliveries in flight get `grace` seconds."""
        for unlisten in self._unlisten:
            unlisten()
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
        if self._sending:
            _, late = await asyncio.wait(self._sending, timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    # --- raising ---------------------------------------------------------------------------------------------
    def alert(self, kind: str, job: Job) -> None:
        """Raise `kind` for the job unless it was raised for it already; never blocks, never raises."""
        pair = (job.id, kind)
        if pair in self._seen:
            return
        self._seen[pair] = None
        if len(self._seen) > SEEN_CAP:
            self._seen.popitem(last=False)
        at = self.clock()
        self.raised[kind] += 1
        summary: dict[str, Any] = {"type": kind, "id": job.id, "method": job.method.value, "name": job.name, "at": at}
        summary.update(status=job.status.value, attempts=job.attempts, error=job.error)
        self.recent.appendleft(summary)
        log.warning("alert %s: job %s attempt=%d status=%s", kind, job.id, job.attempts, job.status)
        if self.url is None:
            return
        try:
            self._queue.put_nowait({"type": kind, "job": job.to_result(), "at": at})
        except asyncio.QueueFull:
            self.dropped += 1

    def _on_final(self, job: Job) -> None:
        if job.status is Status.DEAD:
            self.alert("dead", job)

    def attempt_began(self, job: Job) -> asyncio.TimerHandle | None:
        """An attempt starts: `late` when it starts more than --late_after after its due time; with --slow_after,
        the timer that raises `slow` if the attempt still runs then (the caller cancels it when the attempt ends)."""
        if self.late_after is not None and job.started_at is not None and job.started_at - job.run_at > self.late_after:
            self.alert("late", job)
        if self.slow_after is None:
            return None
        return asyncio.get_running_loop().call_later(self.slow_after, self.alert, "slow", job)

    # --- delivery --------------------------------------------------------------------------------------------
    async def _send_forever(self) -> None:
        room = asyncio.Semaphore(SENDING_CAP)
        while True:
            alert = await self._queue.get()
            await room.acquire()
            task = asyncio.get_running_loop().create_task(self._deliver(alert))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)
            task.add_done_callback(lambda _: room.release())

    async def _deliver(self, alert: dict[str, Any]) -> None:
        body = msgspec.json.encode(alert)
        why = ""
        for delay in (0.0, *self.retry_delays):
            if delay:
                await asyncio.sleep(delay)
            try:
                status = await self._post(body, alert["type"])
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                why = type(exc).__name__
                continue
            if 200 <= status < 300:
                self.delivered += 1
                return
            why = f"HTTP {status}"
        self.undelivered += 1
        log.warning("alert %s for job %s not delivered (%s): given up", alert["type"], alert["job"]["id"], why)

    async def _post(self, body: bytes, kind: str) -> int:
        assert self.url is not None
        if self._session is None:
            self._session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        headers = {"Content-Type": "application/json", "User-Agent": f"poulpe/{self.version}", "Poulpe-Alert": kind}
        if self._key is not None:
            headers["Poulpe-Signature"] = signature(self._key, body)
        timeout = aiohttp.ClientTimeout(total=POST_TIMEOUT)
        async with self._session.post(self.url, data=body, headers=headers, timeout=timeout) as resp:
            await resp.read()
            return resp.status

    def view(self) -> dict[str, Any]:
        """`GET /alerts`: counts by type, the latest alerts (newest first) and how deliveries went."""
        return {
            "counts": dict(self.raised),
            "recent": list(self.recent),
            "delivery": {
                "url": self.url is not None,
                "delivered": self.delivered,
                "undelivered": self.undelivered,
                "dropped": self.dropped,
                "waiting": self._queue.qsize() + len(self._sending),
            },
        }


class AlertMetrics(Collector):
    """`poulpe_alerts_total{type}` and the delivery counters, read from Alerts at scrape time."""

    def __init__(self, alerts: Alerts) -> None:
        self.alerts = alerts

    def collect(self) -> Iterable[Metric]:
        raised = CounterMetricFamily(
            "poulpe_alerts", "Alerts raised, by type (at most one per job and type)", labels=["type"]
        )
        for kind in TYPES:
            raised.add_metric([kind], self.alerts.raised[kind])
        yield raised
        yield CounterMetricFamily(
            "poulpe_alerts_undelivered",
            "Alerts --alert_url did not take after every retry",
            value=self.alerts.undelivered,
        )
        yield CounterMetricFamily(
            "poulpe_alerts_dropped",
            "Alerts dropped because too many were waiting for delivery",
            value=self.alerts.dropped,
        )

    def describe(self) -> Iterable[Metric]:
        return self.collect()

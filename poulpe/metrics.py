"""Prometheus metrics of one poulpe process (`GET /metrics`).

Each app owns its registry (never prometheus-client's global one), so several apps in one process or one test run
do not clash. Labels are bounded: method, status, worker number, store operation, HTTP status. Never a job id or a
URL. Counters count what this process did since it started; the gauges (jobs by status, busy workers) are read at
scrape time from the store and the workers.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from poulpe.job import Job, Method, Status
from poulpe.store.base import Store

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_METHODS = [m.value for m in Method]
_STATUSES = [s.value for s in Status]
# Attempts run from milliseconds (a local target) to the 30 s default timeout and beyond.
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
# SPEC 4.3 promises a start within a few milliseconds of the due time when a worker is free.
_LATENESS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 60, 300)
_STORE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5)
# An HTTP answer starts: to a request, or instead of a WebSocket handshake (ASGI's denial response)
_ANSWERS = frozenset({"http.response.start", "websocket.http.response.start"})


KEY_GAUGES = 20  # per-key series in /metrics: the busiest keys only (most waiting, then most running)


class Metrics:
    """Every metric poulpe exports. The manager and the finish step tell `accepted`, `started` and `ended` in
    numbers (a method, a status, seconds): the job itself never passes through metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.jobs_accepted = Counter("poulpe_jobs_accepted", "Jobs stored from any intake", ["method"], registry=r)
        self.jobs_succeeded = Counter("poulpe_jobs_succeeded", "Jobs that ended succeeded", ["method"], registry=r)
        self.jobs_retried = Counter(
            "poulpe_jobs_retried", "Failed attempts followed by another attempt", ["method"], registry=r
        )
        self.jobs_dead = Counter("poulpe_jobs_dead", "Jobs that ran out of attempts", ["method"], registry=r)
        self.attempts_failed = Counter("poulpe_attempts_failed", "Attempts that failed", ["method"], registry=r)
        self.attempt_seconds = Histogram(
            "poulpe_attempt_duration_seconds",
            "Duration of one attempt",
            ["method"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.lateness_seconds = Histogram(
            "poulpe_job_lateness_seconds",
            "Attempt start minus the job's due time (run_at)",
            buckets=_LATENESS_BUCKETS,
            registry=r,
        )
        self.store_seconds = Histogram(
            "poulpe_store_operation_seconds", "Latency of store operations", ["op"], buckets=_STORE_BUCKETS, registry=r
        )
        self.store_errors = Counter("poulpe_store_errors", "Store operations that raised", ["op"], registry=r)
        self.http_errors = Counter(
            "poulpe_intake_errors", "HTTP requests answered with an error, by status code", ["status"], registry=r
        )
        self.jobs = Gauge("poulpe_jobs", "Jobs in the store by status (read at scrape time)", ["status"], registry=r)
        self.worker_busy = Gauge("poulpe_worker_busy", "1 while the worker runs a job", ["worker"], registry=r)
        self.ready = Gauge("poulpe_ready_jobs", "Due jobs waiting in memory for a free worker", registry=r)
        self.paused = Gauge("poulpe_paused", "1 while the whole deployment is paused (POST /pause)", registry=r)
        # keys (SPEC 10.1): the KEY_GAUGES busiest only, so a million keys cannot make a million series
        self.key_waiting = Gauge("poulpe_key_waiting", "Due jobs of a key waiting (busiest keys)", ["key"], registry=r)
        self.key_running = Gauge("poulpe_key_running", "Attempts of a key running (busiest keys)", ["key"], registry=r)
        # Every series exists from the start (rate() and alerts need no special case), and the children are looked
        # up once: `.labels()` takes a lock and builds a key, which the job's path should not pay each time.
        self._accepted = {m: self.jobs_accepted.labels(m) for m in _METHODS}
        self._succeeded = {m: self.jobs_succeeded.labels(m) for m in _METHODS}
        self._retried = {m: self.jobs_retried.labels(m) for m in _METHODS}
        self._dead = {m: self.jobs_dead.labels(m) for m in _METHODS}
        self._failed = {m: self.attempts_failed.labels(m) for m in _METHODS}
        self._duration = {m: self.attempt_seconds.labels(m) for m in _METHODS}

    # --- counts from the job's path: numbers, never the job (the path hands the job on, metrics only count) ----
    def accepted(self, methods: Sequence[str]) -> None:
        """Jobs newly stored (duplicates left out), by method: a batch's are counted first, so its jobs of one method
        are one increment of their counter (each takes the counter's lock); a lone job skips the counting (1 µs)."""
        if len(methods) == 1:
            self._accepted[methods[0]].inc()
            return
        for method, count in collections.Counter(methods).items():
            self._accepted[method].inc(count)

    def started(self, lateness: float) -> None:
        """An attempt started `lateness` seconds after its job's due time."""
        self.lateness_seconds.observe(max(0.0, lateness))

    def ended(self, method: str, status: Status, seconds: float | None, *, failed: bool) -> None:
        """After an attempt's outcome is decided: its duration (None: it has none), and what became of the job."""
        if seconds is not None:
            self._duration[method].observe(max(0.0, seconds))
            if failed:
                self._failed[method].inc()
        if status is Status.SUCCEEDED:
            self._succeeded[method].inc()
        elif status is Status.RETRYING:
            self._retried[method].inc()
        elif status is Status.DEAD:
            self._dead[method].inc()

    # --- scrape ----------------------------------------------------------------------------------------------
    def watch(self, name: str, documentation: str, read: Callable[[], float], *, gauge: bool = False) -> Collector:
        """Export a counter (or a gauge) kept elsewhere (e.g. DeadLetters.write_errors), read at scrape time."""
        collector = _ReadValue(name, documentation, read, GaugeMetricFamily if gauge else CounterMetricFamily)
        self.registry.register(collector)
        return collector

    def exposition(
        self,
        *,
        counts: Mapping[str, int],
        running: Sequence[Job | None],
        ready: int,
        keys: Sequence[Mapping[str, Any]] = (),
        paused: bool = False,
    ) -> bytes:
        """The text format, with the gauges set from the state given (read by the caller just before). `keys` are
        the busiest keys' states (GET /keys), at most KEY_GAUGES of them."""
        for status in _STATUSES:
            self.jobs.labels(status).set(counts.get(status, 0))
        for worker, job in enumerate(running):
            self.worker_busy.labels(str(worker)).set(0 if job is None else 1)
        self.ready.set(ready)
        self.paused.set(1 if paused else 0)
        self.key_waiting.clear()
        self.key_running.clear()
        for state in keys[:KEY_GAUGES]:
            self.key_waiting.labels(state["key"]).set(state["waiting"])
            self.key_running.labels(state["key"]).set(state["running"])
        return generate_latest(self.registry)

    # --- store timing ----------------------------------------------------------------------------------------
    def time_store(self, store: Store) -> None:
        """Meter every operation of the store's contract, on this store object (any backend): each operation times
        itself and tells its duration and its failure (store/timing.py); no job passes through metrics."""
        store.time_operations(lambda op: (self.store_seconds.labels(op).observe, self.store_errors.labels(op).inc))


class _ReadValue(Collector):
    def __init__(
        self,
        name: str,
        documentation: str,
        read: Callable[[], float],
        family: type[CounterMetricFamily] | type[GaugeMetricFamily],
    ) -> None:
        self.name, self.documentation, self.read, self.family = name, documentation, read, family

    def collect(self) -> Iterable[Metric]:
        yield self.family(self.name, self.documentation, value=self.read())

    def describe(self) -> Iterable[Metric]:
        yield self.family(self.name, self.documentation)


def count_answer(metrics: Metrics, message: Message) -> None:
    """ErrorCounter's count of one message sent: an HTTP answer of status 400 and above."""
    if message["type"] in _ANSWERS and message["status"] >= 400:
        metrics.http_errors.labels(str(message["status"])).inc()


class ErrorCounter:
    """Pure ASGI middleware: counts HTTP answers of status 400 and above (401s from the token check included), and
    the HTTP answers that refuse a WebSocket handshake."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return

        async def counting_send(message: Message) -> None:
            count_answer(self.metrics, message)
            await send(message)

        await self.app(scope, receive, counting_send)

"""Service: every part of a running poulpe, started in one written order and drained and stopped in another.

The server (server.py), the app's lifespan (app.py) and the tests use it; no one else starts or stops a part.

Start: the store opens, attempt spans are set up (with tracing on), alerts and callbacks listen (before the first
job can end), the manager recovers and workers start, the charts' history samples, then the intakes that make jobs
on their own: cron, external workers' timers, kingtask's broker protocol, Kafka.

Drain (`drain`, run once however many ask): intakes stop (HTTP and WebSocket answer 503, every long-poll answers
with the job's current state), kingtask's protocol closes, cron stops, workers take no further job and running
attempts get --grace seconds while Kafka stops consuming, what is left stays stored for the next start, external
workers' timers stop.

Stop (`stop`, after the drain): the history stops sampling, the results of jobs that ended meanwhile go out (Kafka,
alerts, callbacks), runners and the store close, the last attempt spans are sent.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from poulpe import __version__, tracing
from poulpe.alerts import AlertMetrics, Alerts
from poulpe.callbacks import Callbacks
from poulpe.deadletter import DeadLetters
from poulpe.external import ExternalWorkers
from poulpe.history import History
from poulpe.job import HTTP_METHODS, Method, RetryPolicy
from poulpe.keys import KeyLimits
from poulpe.manager import JobManager
from poulpe.metrics import Metrics
from poulpe.quotas import Buckets, LocalBuckets, buckets_for
from poulpe.runners import Runner
from poulpe.runners.exec import ExecRunner
from poulpe.runners.http import HttpRunner
from poulpe.settings import Settings
from poulpe.store import open_store
from poulpe.validate import Limits

if TYPE_CHECKING:
    from poulpe.compat.kingtask_wire import KingtaskWire
    from poulpe.crontab import Crontab
    from poulpe.intake.kafka import KafkaIntake

log = logging.getLogger(__name__)


def build_runners(settings: Settings) -> dict[Method, Runner]:
    http = HttpRunner(allow_hosts=settings.allow_hosts, signing_key=settings.signing_key, version=__version__)
    runners: dict[Method, Runner] = dict.fromkeys(HTTP_METHODS, http)
    if settings.exec_root is not None:
        runners[Method.EXEC] = ExecRunner(exec_dir=settings.exec_root)
    if settings.smtp_server:
        from poulpe.runners.mail import MailRunner

        runners[Method.MAIL_TO] = MailRunner(
            server=settings.smtp_server,
            port=settings.smtp_port,
            user=settings.smtp_name,
            password=settings.smtp_pwd,
            starttls=settings.starttls,
            tls=settings.smtp_tls,
        )
    return runners


def limits_for(settings: Settings) -> Limits:
    return Limits(
        workers=settings.workers,
        exec_dir=settings.exec_root,
        allow_hosts=settings.allow_hosts,
        mail_enabled=bool(settings.smtp_server),
        default_retry=RetryPolicy(max=settings.max_retry, interval=settings.retry_interval),
    )


def key_defaults(settings: Settings) -> KeyLimits:
    """--key_parallelism, --key_rate, --key_period (0: no limit of that kind)."""
    return KeyLimits(
        parallelism=settings.key_parallelism or None, rate=settings.key_rate or None, period=settings.key_period
    )


def _spans(settings: Settings, node: str) -> tracing.Spans | None:
    """Tracing on (--otlp_endpoint or OTEL_EXPORTER_OTLP_ENDPOINT): OpenTelemetry's SDK is imported only then."""
    url = tracing.endpoint(settings.otlp_endpoint)
    if url is None:
        return None
    from poulpe.tracing_otel import AttemptSpans

    return AttemptSpans(url, node=node, version=__version__)


def _busy(manager: JobManager) -> Callable[[], int]:
    """Workers running an attempt now, for the charts."""
    return lambda: sum(job is not None for job in manager.running)


class Service:
    def __init__(self, settings: Settings, *, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.limits = limits_for(settings)
        self.node = f"{socket.gethostname()}:{os.getpid()}"
        self.started_at = 0.0
        self._drain: asyncio.Task[None] | None = None
        self._parts: _Parts | None = None
        self.buckets: Buckets = LocalBuckets()

    @property
    def manager(self) -> JobManager:
        assert self._parts is not None, "Service.start() first"
        return self._parts.manager

    async def start(self) -> None:
        """Every part, in order; recovery is done and workers run when this returns."""
        settings, metrics = self.settings, self.metrics
        store = open_store(settings, owner=f"{self.node}:{secrets.token_hex(4)}")
        await store.open()
        self.buckets = buckets_for(store)
        metrics.time_store(store)
        runners = build_runners(settings)
        aborts = None
        if settings.cron is not None:  # overlap=replace stops a running fire (aborts.py)
            from poulpe.aborts import Aborts

            aborts = Aborts()
            runners = aborts.wrap(runners)
        manager = JobManager(
            store,
            runners,
            DeadLetters(settings.dead),
            workers=settings.workers,
            default_retry=self.limits.default_retry,
            job_timeout=settings.job_timeout,
            result_ttl=settings.result_ttl,
            lease=settings.lease,
            node=self.node,
            metrics=metrics,
            key_defaults=key_defaults(settings),
        )
        parts = self._parts = _Parts(manager, runners)
        parts.spans = manager.attempt.spans = _spans(settings, self.node)
        parts.gauges = [
            metrics.watch(
                "poulpe_dead_letter_write_errors",
                "Dead letters that could not be written",
                lambda: manager.dead.write_errors,
            ),
            metrics.watch(
                "poulpe_dead_letters_owed",
                "Dead jobs whose letter the directory has not taken yet (written when it can)",
                lambda: len(manager.dead_jobs.owed),
                gauge=True,
            ),
            metrics.watch(
                "poulpe_jobs_debounced",
                "Submissions that replaced the job waiting under their debounce key",
                lambda: manager.debouncer.replaced,
            ),
            metrics.watch(
                "poulpe_jobs_deadline_missed",
                "Jobs that ended dead because their start deadline passed",
                lambda: manager.deadlines.missed,
            ),
        ]
        parts.alerts = Alerts(
            url=settings.alert_url,
            signing_key=settings.signing_key,
            late_after=settings.late_after or None,
            slow_after=settings.slow_after or None,
            version=__version__,
        )
        parts.alerts.start(manager.events)  # listening before the first job can end
        manager.attempt.alerts = parts.alerts
        alert_metrics = AlertMetrics(parts.alerts)
        metrics.registry.register(alert_metrics)
        parts.gauges.append(alert_metrics)
        parts.callbacks = Callbacks(  # listening before the first job can finish
            manager, allow_hosts=settings.allow_hosts, signing_key=settings.signing_key, version=__version__
        )
        parts.callbacks.start()
        await manager.start()
        parts.history = History(metrics, queued=lambda: manager.ready_count, running=_busy(manager))
        parts.history.start()  # the dashboard's charts (GET /history)
        if settings.cron is not None:
            from poulpe.crontab import Crontab
            from poulpe.store.cron_state import cron_states

            states = cron_states(store)
            parts.crontab = Crontab(settings.cron, manager, self.limits, tz=settings.zone, states=states, aborts=aborts)
            parts.crontab.load()
            parts.crontab.start()
            from poulpe.cron_metrics import CronMetrics

            cron_metrics = CronMetrics(parts.crontab)
            metrics.registry.register(cron_metrics)
            parts.gauges.append(cron_metrics)
        parts.external = ExternalWorkers(manager)  # QUEUE jobs for external workers (poulpe/external.py)
        await parts.external.start()
        if settings.kingtask_bind is not None:  # kingtask's broker protocol (poulpe/compat/kingtask_wire.py)
            from poulpe.compat.kingtask_wire import KingtaskWire

            parts.kingtask_wire = KingtaskWire(manager, self.limits, *settings.kingtask_bind)
            await parts.kingtask_wire.start()
        if settings.kafka_servers:  # after recovery (docs/kafka.md)
            from poulpe.intake.kafka import KafkaIntake

            parts.kafka = KafkaIntake(settings, manager, self.limits, shared=store if store.shared else None)
            await parts.kafka.start()
        self.started_at = time.time()
        log.info("poulpe ready: %s store, %d workers", store.kind, settings.workers)

    def state(self) -> dict[str, Any]:
        """What the routes read from the lifespan state."""
        parts = self._parts
        assert parts is not None, "Service.start() first"
        kafka = parts.kafka
        return {
            "manager": parts.manager,
            "settings": self.settings,
            "limits": self.limits,
            "crontab": parts.crontab,
            "external": parts.external,
            "started_at": self.started_at,
            "metrics": self.metrics,
            "reports": {"kafka": kafka.report} if kafka is not None else {},
            "alerts": parts.alerts,
            "history": parts.history,
            "buckets": self.buckets,  # tokens' rate quotas (poulpe/quotas.py)
        }

    async def drain(self) -> None:
        """Intakes stop, long-polls answer, cron and Kafka stop, workers drain within --grace. Run once: a second
        caller waits for the same drain."""
        if self._parts is None:
            return
        if self._drain is None:
            self._drain = asyncio.get_running_loop().create_task(self._drain_once(self._parts), name="poulpe-drain")
        await asyncio.shield(self._drain)

    async def _drain_once(self, parts: _Parts) -> None:
        manager = parts.manager
        manager.stop_intake()  # new jobs get 503, long-polls and WebSocket sessions answer; cron and Kafka take none
        if parts.kingtask_wire is not None:
            await parts.kingtask_wire.stop()
        if parts.crontab is not None:
            await parts.crontab.stop()
        # workers take nothing more from now on; running attempts get --grace, the rest stays stored
        workers = asyncio.get_running_loop().create_task(manager.stop(self.settings.grace), name="poulpe-workers-stop")
        if parts.kafka is not None:
            await parts.kafka.stop_consuming()  # a batch not stored yet is not committed: read again after a restart
        await workers
        if parts.external is not None:
            await parts.external.stop()

    async def stop(self) -> None:
        """Drain (if no one asked yet), send what ended meanwhile, close runners and the store."""
        parts = self._parts
        if parts is None:
            return
        await self.drain()
        if parts.kafka is not None:
            await parts.kafka.stop(flush_s=5.0)
        if parts.history is not None:
            await parts.history.stop()
        if parts.alerts is not None:
            await parts.alerts.stop()
        if parts.callbacks is not None:
            await parts.callbacks.stop()  # after the drain: jobs ending in the grace period get theirs
        for runner in set(parts.runners.values()):
            await runner.close()
        await parts.manager.store.close()
        if parts.spans is not None:
            await asyncio.to_thread(parts.spans.close)  # the last spans are sent (the SDK bounds the wait)
        for gauge in parts.gauges:
            self.metrics.registry.unregister(gauge)
        self._parts = None
        log.info("poulpe stopped")


class _Parts:
    """The parts a started Service holds; optional ones are None when their flags are not given."""

    def __init__(self, manager: JobManager, runners: dict[Method, Runner]) -> None:
        self.manager = manager
        self.runners = runners
        self.gauges: list[Any] = []
        self.alerts: Alerts | None = None
        self.history: History | None = None
        self.callbacks: Callbacks | None = None
        self.crontab: Crontab | None = None
        self.external: ExternalWorkers | None = None
        self.kingtask_wire: KingtaskWire | None = None
        self.kafka: KafkaIntake | None = None
        self.spans: tracing.Spans | None = None

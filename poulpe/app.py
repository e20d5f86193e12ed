"""create_app(settings): the one place that builds poulpe's objects and wires them to routes."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute

from poulpe import __version__, api, keys_api, ops_api
from poulpe.auth import TokenAuth
from poulpe.callbacks import Callbacks
from poulpe.compat.routes import routes as compat_routes
from poulpe.deadletter import DeadLetters
from poulpe.errors import PoulpeError
from poulpe.external import ExternalWorkers
from poulpe.intake.http import task_in_queue
from poulpe.intake.ws import ws_task
from poulpe.job import HTTP_METHODS, Method, RetryPolicy
from poulpe.keys import KeyLimits
from poulpe.manager import JobManager
from poulpe.metrics import ErrorCounter, Metrics
from poulpe.openapi import document
from poulpe.responses import json_response
from poulpe.runners import Runner
from poulpe.runners.exec import ExecRunner
from poulpe.runners.http import HttpRunner
from poulpe.settings import Settings
from poulpe.store import open_store
from poulpe.validate import Limits

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


def create_app(settings: Settings) -> Starlette:
    limits = limits_for(settings)
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        node = f"{socket.gethostname()}:{os.getpid()}"
        store = open_store(settings, owner=f"{node}:{secrets.token_hex(4)}")
        await store.open()
        metrics.time_store(store)
        runners = build_runners(settings)
        manager = JobManager(
            store,
            runners,
            DeadLetters(settings.dead),
            workers=settings.workers,
            default_retry=limits.default_retry,
            job_timeout=settings.job_timeout,
            result_ttl=settings.result_ttl,
            lease=settings.lease,
            node=node,
            metrics=metrics,
            key_defaults=key_defaults(settings),
        )
        dead_errors = metrics.watch(
            "poulpe_dead_letter_write_errors",
            "Dead letters that could not be written",
            lambda: manager.dead.write_errors,
        )
        dead_owed = metrics.watch(
            "poulpe_dead_letters_owed",
            "Dead jobs whose letter the directory has not taken yet (written when it can)",
            lambda: len(manager.dead_jobs.owed),
            gauge=True,
        )
        callbacks = Callbacks(  # listening before the first job can finish
            manager, allow_hosts=settings.allow_hosts, signing_key=settings.signing_key, version=__version__
        )
        callbacks.start()
        await manager.start()
        crontab = None
        if settings.cron is not None:
            from poulpe.crontab import Crontab

            crontab = Crontab(settings.cron, manager, limits, tz=settings.zone)
            crontab.load()
            crontab.start()
        external = ExternalWorkers(manager)  # QUEUE jobs for external workers (poulpe/external.py)
        await external.start()
        kingtask_wire = None
        if settings.kingtask_bind is not None:  # kingtask's broker protocol (poulpe/compat/kingtask_wire.py)
            from poulpe.compat.kingtask_wire import KingtaskWire

            kingtask_wire = KingtaskWire(manager, limits, *settings.kingtask_bind)
            await kingtask_wire.start()
        # Kafka intake (docs/kafka.md): started after recovery; it stops consuming as soon as the manager drains
        kafka = None
        if settings.kafka_servers:
            from poulpe.intake.kafka import KafkaIntake

            kafka = KafkaIntake(settings, manager, limits)
            await kafka.start()
        reports = {"kafka": kafka.report} if kafka is not None else {}
        app.state.manager = manager
        log.info("poulpe ready: %s store, %d workers", store.kind, settings.workers)
        try:
            yield {
                "manager": manager,
                "settings": settings,
                "limits": limits,
                "crontab": crontab,
                "external": external,
                "started_at": time.time(),
                "metrics": metrics,
                "reports": reports,
            }
        finally:
            if crontab is not None:
                await crontab.stop()
            if kingtask_wire is not None:
                await kingtask_wire.stop()
            await external.stop()
            if kafka is not None:
                await kafka.stop_consuming()
            await manager.stop(settings.grace)
            if kafka is not None:
                await kafka.stop(flush_s=5.0)
            await callbacks.stop()  # after the drain: jobs ending in the grace period get theirs
            for runner in set(runners.values()):
                await runner.close()
            await store.close()
            metrics.registry.unregister(dead_errors)
            metrics.registry.unregister(dead_owed)
            log.info("poulpe stopped")

    async def openapi(request: Request) -> Response:
        return json_response(document())

    routes = [
        Route("/task_in_queue", task_in_queue, methods=["POST"]),
        Route("/task_resp/{id}", api.task_resp, methods=["GET"]),
        Route("/jobs", api.list_jobs, methods=["GET"]),
        Route("/jobs/{id}", api.get_job, methods=["GET"]),
        Route("/jobs/{id}", api.cancel_job, methods=["DELETE"]),
        Route("/jobs/{id}/run", keys_api.run_job, methods=["POST"]),
        Route("/keys", keys_api.list_keys, methods=["GET"]),
        keys_api.key_route("/keys/{key}", keys_api.get_key, "GET"),
        keys_api.key_route("/keys/{key}", keys_api.put_key, "PUT"),
        keys_api.key_route("/keys/{key}", keys_api.delete_key, "DELETE"),
        Route("/pause", keys_api.pause, methods=["POST"]),
        Route("/resume", keys_api.resume, methods=["POST"]),
        Route("/dead", api.list_dead, methods=["GET"]),
        Route("/dead/{id}", api.get_dead, methods=["GET"]),
        Route("/dead/{id}", api.delete_dead, methods=["DELETE"]),
        Route("/dead/{id}/retry", api.retry_dead, methods=["POST"]),
        Route("/health", api.health, methods=["GET"]),
        Route("/sys_info", api.sys_info, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        WebSocketRoute("/ws_task", ws_task),
        # the operator's view
        Route("/metrics", ops_api.metrics, methods=["GET"]),
        Route("/cron", ops_api.cron_lines, methods=["GET"]),
        Route("/", ops_api.dashboard, methods=["GET"]),
        Route("/dashboard.js", ops_api.dashboard_js, methods=["GET"]),
        Route("/dashboard.css", ops_api.dashboard_css, methods=["GET"]),
        *compat_routes(),  # kingtask and easyTask (poulpe/compat/)
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(ErrorCounter, metrics=metrics), Middleware(TokenAuth, token=settings.token)],
        exception_handlers={PoulpeError: _poulpe_error, HTTPException: _http_error, Exception: _unexpected},
        lifespan=lifespan,
    )


async def _poulpe_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PoulpeError)
    return json_response(exc.to_json(), exc.status)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    response = json_response({"result": "Fail", "error": exc.detail, "field": None}, exc.status_code)
    response.headers.update(exc.headers or {})  # a 405 must say which methods are allowed
    return response


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return json_response({"result": "Fail", "error": "internal error", "field": None}, 500)

"""create_app(settings): poulpe's routes, error handlers and middleware over a Service (service.py)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute

from poulpe import actions_api, api, batches_api, cron_api, keys_api, ops_api
from poulpe.auth import TokenAuth, guard
from poulpe.compat.routes import routes as compat_routes
from poulpe.errors import PoulpeError
from poulpe.intake.hot import PoulpeApp, hot_route
from poulpe.intake.http import task_in_queue
from poulpe.intake.ws import ws_task
from poulpe.metrics import ErrorCounter, Metrics
from poulpe.openapi import document
from poulpe.responses import json_response
from poulpe.service import Service
from poulpe.settings import Settings
from poulpe.token_file import Tokens

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> Starlette:
    """The routes over a Service (service.py) that the lifespan starts and stops; `app.state.service` is it."""
    metrics = Metrics()
    service = Service(settings, metrics=metrics)
    tokens = Tokens(settings.tokens, settings.token.reveal() if settings.token else None)  # bad file: no start

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        await service.start()
        tokens.start()  # reloads on SIGHUP and when the file changes
        try:
            yield service.state()
        finally:
            await tokens.stop()
            await service.stop()  # drains first unless the server has (server.py)

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
        Route("/batches", batches_api.post_batch, methods=["POST"]),
        Route("/batches/{id}", batches_api.get_batch, methods=["GET"]),
        Route("/actions", actions_api.post_action, methods=["POST"]),
        Route("/actions/{id}", actions_api.get_action, methods=["GET"]),
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
        Route("/cron", cron_api.cron_lines, methods=["GET"]),
        Route("/cron/{id}", cron_api.put_line, methods=["PUT"]),
        Route("/cron/{id}/run", cron_api.run_line, methods=["POST"]),
        Route("/cron/{id}/backfill", cron_api.backfill_line, methods=["POST"]),
        Route("/alerts", ops_api.alerts, methods=["GET"]),
        Route("/history", ops_api.history, methods=["GET"]),
        Route("/", ops_api.dashboard, methods=["GET"]),
        Route("/dashboard.js", ops_api.dashboard_js, methods=["GET"]),
        Route("/dashboard.css", ops_api.dashboard_css, methods=["GET"]),
        *compat_routes(),  # kingtask and easyTask (poulpe/compat/)
    ]
    app = PoulpeApp(
        routes=guard(routes, tokens),  # each route's scope (poulpe/scopes.py)
        middleware=[Middleware(ErrorCounter, metrics=metrics), Middleware(TokenAuth, tokens=tokens)],
        exception_handlers={PoulpeError: _poulpe_error, HTTPException: _http_error, Exception: _unexpected},
        lifespan=lifespan,
    )
    hot_route(app, tokens, metrics)  # POST /task_in_queue through one layer that does what the stack does (hot.py)
    app.state.service = service
    return app


async def _poulpe_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PoulpeError)
    response = json_response(exc.to_json(), exc.status)
    response.headers.update(getattr(exc, "headers", None) or {})  # a 429's Retry-After
    return response


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    response = json_response({"result": "Fail", "error": exc.detail, "field": None}, exc.status_code)
    response.headers.update(exc.headers or {})  # a 405 must say which methods are allowed
    return response


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return json_response({"result": "Fail", "error": "internal error", "field": None}, 500)

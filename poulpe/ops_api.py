"""The operator's routes: Prometheus metrics, alerts, the charts' history and the dashboard page (cron: cron_api.py)."""

from __future__ import annotations

from importlib import resources

from starlette.requests import Request
from starlette.responses import Response

from poulpe.alerts import Alerts
from poulpe.history import History
from poulpe.manager import JobManager
from poulpe.metrics import CONTENT_TYPE, KEY_GAUGES, Metrics
from poulpe.responses import json_response
from poulpe.tenants import Scoped

# The page loads only its own script and style and talks only to poulpe: an injected tag could do nothing.
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}


async def metrics(request: Request) -> Response:
    manager: JobManager = request.state.manager
    if isinstance(manager, Scoped) and manager.tenant is not None:  # a tenant's own gauges, nothing of the others
        return Response(await manager.metrics_text(), media_type=CONTENT_TYPE)
    registry: Metrics = request.state.metrics
    counts = await manager.counts()
    busiest = (await manager.controls.listing(1, KEY_GAUGES))["keys"]
    body = registry.exposition(
        counts=counts,
        running=manager.running,
        ready=manager.ready_count,
        keys=busiest,
        paused=manager.paused,
    )
    return Response(body, media_type=CONTENT_TYPE)


def _asset(name: str) -> Response:
    data = resources.files("poulpe.dashboard").joinpath(name).read_bytes()
    response = Response(data, media_type=_ASSETS[name])
    response.headers.update(
        {"Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}
    )
    return response


async def dashboard(request: Request) -> Response:
    """The page holds no data (it asks the JSON routes, with the token): no token needed to load it."""
    return _asset("index.html")


async def dashboard_js(request: Request) -> Response:
    return _asset("dashboard.js")


async def dashboard_css(request: Request) -> Response:
    return _asset("dashboard.css")


async def alerts(request: Request) -> Response:
    """Alerts raised by this process: counts by type, the latest ones, how deliveries to --alert_url went."""
    raised: Alerts = request.state.alerts
    return json_response(raised.view())


async def history(request: Request) -> Response:
    """The dashboard charts' history: jobs done and failed per second, lateness, waiting and running jobs."""
    kept: History = request.state.history
    return json_response(kept.view())

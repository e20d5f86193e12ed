"""The operator's routes: Prometheus metrics, the cron lines with their next fires, and the dashboard page."""

from __future__ import annotations

import itertools
import time
from importlib import resources
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from starlette.requests import Request
from starlette.responses import Response

from poulpe.alerts import Alerts
from poulpe.cron import fire_times
from poulpe.crontab import Crontab
from poulpe.history import History
from poulpe.manager import JobManager
from poulpe.metrics import CONTENT_TYPE, KEY_GAUGES, Metrics
from poulpe.responses import json_response
from poulpe.tenants import Scoped

NEXT_FIRES = 3
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


async def cron_lines(request: Request) -> Response:
    """The cron file's job lines and their next fire times (an empty list without --cron)."""
    crontab: Crontab | None = request.state.crontab
    if crontab is None:
        return json_response({"file": None, "timezone": None, "lines": []})
    now = time.time()
    lines: list[dict[str, Any]] = []
    for line in crontab.lines:
        lines.append(
            {
                "line": line.line_no,
                "expr": line.expr,
                "name": _without_credentials(line.name),
                "method": line.method.value,
                "id_prefix": f"cron:{line.fingerprint}:",
                "next": list(itertools.islice(fire_times(line, now, crontab.tz), NEXT_FIRES)),
            }
        )
    return json_response({"file": str(crontab.path), "timezone": crontab.tz.key, "lines": lines})


def _without_credentials(name: str) -> str:
    """A URL's user and password are masked: the dashboard is no place for them."""
    parts = urlsplit(name)
    if parts.scheme in ("http", "https") and "@" in parts.netloc:
        host = parts.netloc.rsplit("@", 1)[1]
        return urlunsplit(parts._replace(netloc=f"***@{host}"))
    return name


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

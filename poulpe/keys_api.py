"""The routes of flow control (SPEC 10.1): keys' limits and pauses, the deployment-wide pause, run now."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from poulpe.api import path_job_id
from poulpe.manager import JobManager, check_page
from poulpe.responses import int_param, json_response

Endpoint = Callable[[Request], Awaitable[Response]]


def _manager(request: Request) -> JobManager:
    manager: JobManager = request.state.manager
    return manager


def key_route(path: str, endpoint: Endpoint, method: str) -> Route:
    """`/keys/{key}`, where a key may hold `/` (SPEC 10.1): matched as a path, described as `{key}`."""
    route = Route(path.replace("{key}", "{key:path}"), endpoint, methods=[method])
    route.path = path
    return route


def _key(request: Request) -> str:
    key: str = request.path_params["key"]
    return key


async def list_keys(request: Request) -> Response:
    page, size = int_param(request, "page", 1), int_param(request, "size", 50)
    check_page(page, size)
    return json_response(await _manager(request).controls.listing(page, size))


async def get_key(request: Request) -> Response:
    return json_response(await _manager(request).controls.state(_key(request)))


async def put_key(request: Request) -> Response:
    return json_response(await _manager(request).controls.put(_key(request), await request.body()))


async def delete_key(request: Request) -> Response:
    return json_response(await _manager(request).controls.delete(_key(request)))


async def pause(request: Request) -> Response:
    return json_response(await _manager(request).controls.pause_all(True))


async def resume(request: Request) -> Response:
    return json_response(await _manager(request).controls.pause_all(False))


async def run_job(request: Request) -> Response:
    job = await _manager(request).run_now(path_job_id(request))
    return json_response(job.to_result())

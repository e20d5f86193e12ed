"""The JSON routes around jobs: results, long-poll, paged list, cancel, dead letters, health, sys_info."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from poulpe import __version__
from poulpe.errors import BadRequest, NotFound
from poulpe.job import WORD_OK, Job, Method, Status
from poulpe.job_in import ID_PATTERN
from poulpe.labels import filter_from_query
from poulpe.manager import JobManager, check_page
from poulpe.responses import float_param, int_param, json_response

_ID = re.compile(ID_PATTERN)


def _manager(request: Request) -> JobManager:
    manager: JobManager = request.state.manager
    return manager


def path_job_id(request: Request) -> str:
    """The id in the path. One no job can have (SPEC 2.1) is unknown at once: no store lookup, no 10 KB echo."""
    job_id: str = request.path_params["id"]
    if not _ID.fullmatch(job_id):
        raise _not_found(job_id)
    return job_id


def _not_found(job_id: str) -> NotFound:
    return NotFound(f"no job with id {job_id[:128]}")


def _result(job: Job) -> Response:
    return json_response(job.to_result(), 200 if job.final else 202)


async def task_resp(request: Request) -> Response:
    """Long poll: answers when the job is final, or after `timeout` seconds with its current state."""
    timeout = float_param(request, "timeout", 30.0, low=0, high=300)
    job = await _manager(request).wait(path_job_id(request), timeout)
    if job is None:
        raise _not_found(path_job_id(request))
    return _result(job)


async def get_job(request: Request) -> Response:
    job = await _manager(request).get(path_job_id(request))
    if job is None:
        raise _not_found(path_job_id(request))
    return _result(job)


async def cancel_job(request: Request) -> Response:
    job = await _manager(request).cancel(path_job_id(request))
    return json_response(job.to_result())


async def list_jobs(request: Request) -> Response:
    page, size = int_param(request, "page", 1), int_param(request, "size", 50)
    check_page(page, size)
    query = request.query_params
    status = method = None
    if query.get("status"):
        try:
            status = Status(query["status"].lower())
        except ValueError:
            raise BadRequest(f"status must be one of {', '.join(s.value for s in Status)}", "status") from None
    if query.get("method"):
        try:
            method = Method(query["method"].upper()).value
        except ValueError:
            raise BadRequest(f"method must be one of {', '.join(m.value for m in Method)}", "method") from None
    name = query.get("name") or None
    if query.get("type"):
        if method not in (None, Method.QUEUE.value):
            raise BadRequest("type is the task type of QUEUE jobs: it goes with method QUEUE only", "type")
        method, name = Method.QUEUE.value, query["type"]
    narrow = filter_from_query(query, query.getlist("label"))  # SPEC 10.4: labels, key, name_prefix, times, error
    match = narrow.matches if narrow.narrows else None
    found = await _manager(request).list_jobs(
        status=status, method=method, name=name, match=match, page=page, size=size
    )
    return json_response(
        {"page": page, "size": size, "total": found.total, "jobs": [job.to_result() for job in found.jobs]}
    )


async def list_dead(request: Request) -> Response:
    page, size = int_param(request, "page", 1), int_param(request, "size", 50)
    check_page(page, size)
    narrow = filter_from_query(request.query_params, request.query_params.getlist("label"))
    if narrow.narrows or narrow.method is not None:  # filtered: the dead jobs the store holds (SPEC 10.4)
        items, total = await _manager(request).dead_matching(narrow, page=page, size=size)
    else:
        items, total = await _manager(request).dead_page(page=page, size=size)
    return json_response({"page": page, "size": size, "total": total, "dead": items})


async def get_dead(request: Request) -> Response:
    job = await _manager(request).dead_job(path_job_id(request))
    if job is None:
        raise NotFound(f"no dead job with id {path_job_id(request)[:128]}")
    return json_response({**job.to_result(), "job": {"params": job.params, "cc": job.cc, "retry": job.retry}})


async def retry_dead(request: Request) -> Response:
    job = await _manager(request).retry_dead(path_job_id(request))
    return json_response({"result": WORD_OK, "id": job.id, "status": job.status.value, "run_at": job.run_at}, 202)


async def delete_dead(request: Request) -> Response:
    if not await _manager(request).delete_dead(path_job_id(request)):
        raise NotFound(f"no dead job with id {path_job_id(request)[:128]}")
    return json_response({"result": WORD_OK, "id": path_job_id(request), "deleted": True})


def _reports(request: Request) -> dict[str, Any]:
    """What optional intakes (Kafka) say of themselves: shown in /sys_info and as /health detail."""
    reports: dict[str, Callable[[], Any]] = getattr(request.state, "reports", {})
    return {name: report() for name, report in reports.items()}


async def health(request: Request) -> Response:
    manager = _manager(request)
    ok, fault = await manager.store_health()
    detail = _reports(request)
    if not manager.accepting:
        return json_response({"ok": False, "draining": True}, 503)
    body: dict[str, Any] = {"ok": ok}
    if fault is not None:  # a full disk: the store may still read, but no job can be accepted
        body.update(writable=False, error=fault)
    if manager.paused:
        body["paused"] = True  # healthy, but no job starts (POST /resume)
    if detail:
        body["detail"] = detail
    return json_response(body, 200 if ok else 503)


async def sys_info(request: Request) -> Response:
    manager = _manager(request)
    return json_response(
        {
            "version": __version__,
            "uptime_s": round(time.time() - request.state.started_at, 3),
            "store": manager.store_kind,
            "node": manager.node,
            **await manager.sys_info(),
            **_reports(request),
        }
    )

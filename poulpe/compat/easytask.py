"""easyTask's routes (SPEC 6), mapped onto QUEUE jobs and the external workers of poulpe/external.py.

Answers keep easyTask's shape: `{"code": 0, "data": ...}` on success, `{"code": -1, "errmsg": "..."}` with a
non-200 status on error (easyTask's clients read the status code first); sayhi, beat and newtype answer the bare
text `OK` (or the error sentence). What the clients send is taken as they send it: a JSON body whatever its label
(curl's `-d` calls it a form), or a real form; fields these routes do not use are ignored (easyTask's Go worker posts
back the whole record it fetched).

easyTask's record id (`id`, a number) is poulpe's acceptance number (`seq`); its `tid` is poulpe's job id.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from poulpe.checks import TYPE_RULE, is_task_type
from poulpe.compat.body import read_body
from poulpe.errors import BadRequest, NotFound, PoulpeError
from poulpe.external import ExternalWorkers
from poulpe.job import Job, Method, Status
from poulpe.job_in import ID_PATTERN
from poulpe.manager import JobManager, check_page
from poulpe.responses import json_response
from poulpe.validate import Limits, job_from_object

_ID = re.compile(ID_PATTERN)
_WORKER = re.compile(r"^[^\x00-\x1f\x7f]{1,128}\Z")
FETCH_LEASE_S = 3600.0  # easyTask had no lease: a long one, and a worker that says hi is watched by its beats
EASYTASK_BEAT_S = 5.0  # "each worker sends a beat every 5 seconds"
STAT_NEW, STAT_RUNNING, STAT_DONE, STAT_ERROR = 1, 2, 3, -1
_STAT_OF = {
    Status.SCHEDULED: STAT_NEW,
    Status.QUEUED: STAT_NEW,
    Status.RETRYING: STAT_NEW,
    Status.RUNNING: STAT_RUNNING,
    Status.SUCCEEDED: STAT_DONE,
    Status.DEAD: STAT_ERROR,
    Status.CANCELLED: STAT_ERROR,
}
Handler = Callable[[Request], Awaitable[Any]]


def _answer(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Run a route and answer in easyTask's shape; a PoulpeError keeps its status code."""

    async def route(request: Request) -> Response:
        try:
            data = await handler(request)
        except PoulpeError as exc:
            where = f"{exc.field}: " if exc.field and not exc.message.startswith(exc.field) else ""
            return json_response({"code": -1, "errmsg": f"{where}{exc.message}"}, exc.status)
        return json_response({"code": 0, "data": data})

    return route


def _text(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Run a route that answers bare text, as easyTask's sayhi, beat and newtype did: `OK` or the error sentence."""

    async def route(request: Request) -> Response:
        try:
            text = await handler(request)
        except PoulpeError as exc:
            where = f"{exc.field}: " if exc.field and not exc.message.startswith(exc.field) else ""
            return PlainTextResponse(f"{where}{exc.message}", exc.status)
        return PlainTextResponse(text)

    return route


def _kind(value: str | None, field: str) -> str:
    if not value:
        raise BadRequest(f"{field} is required", field)
    if not is_task_type(value):
        raise BadRequest(f"a task type is {TYPE_RULE}", field)
    return value


def _worker(value: str | None) -> str:
    if not value:
        raise BadRequest("name (the worker's name) is required", "name")
    if not _WORKER.fullmatch(value):
        raise BadRequest("name must be 1-128 printable characters", "name")
    return value


def _one(request: Request, name: str) -> str | None:
    """A query parameter given at most once."""
    if len(request.query_params.getlist(name)) > 1:
        raise BadRequest(f"{name} is given twice", name)
    return request.query_params.get(name)


def _int(request: Request, name: str, default: int) -> int:
    if len(request.query_params.getlist(name)) > 1:
        raise BadRequest(f"{name} is given twice", name)
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isascii() or not raw.lstrip("-").isdigit() or len(raw) > 9:
        raise BadRequest(f"{name} must be a whole number", name)
    return int(raw)


def _time(at: float | None) -> str:
    return "" if at is None else dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def record(job: Job) -> dict[str, Any]:
    """A job as easyTask listed its task records."""
    meta = job.meta or {}
    last = job.history[-1] if job.history else None
    return {
        "id": job.seq,
        "tid": job.id,
        "rid": meta.get("rid", ""),
        "task_type": job.name,
        "task_info": job.params,
        "stat": _STAT_OF[job.status],
        "add_time": _time(job.created_at),
        "update_time": _time(job.finished_at or job.started_at or job.created_at),
        "rapper": "",
        "client": job.lease_holder or (last.node if last and last.node else ""),
        "remark": job.remark or job.error or "",
    }


# --- routes -------------------------------------------------------------------------------------------------------
async def _put_task(request: Request) -> Any:
    """PUT /api/putask/{type}: a QUEUE job of that type; data is its record id."""
    manager: JobManager = request.state.manager
    limits: Limits = request.state.limits
    kind = _kind(request.path_params["type"], "type")
    fields, form = await read_body(request, request.state.settings.max_body)
    if not fields:
        raise BadRequest('the body is empty: send the task as {"rid", "task_info"}', "task_info")
    # the type is the path's, as easyTask took it: a `task_type` in the body is not used (the README's own example
    # puts "download" there and posts to /api/putask/tasktype)
    rid = fields.get("rid")
    if rid is not None and (isinstance(rid, bool) or not isinstance(rid, str | int)):
        raise BadRequest("rid must be a string or a number", "rid")
    info = fields.get("task_info")
    if isinstance(info, str) and form:
        with contextlib.suppress(msgspec.DecodeError, RecursionError):  # a form carries task_info as JSON text
            info = msgspec.json.decode(info)  # (plain text stays text)
    job: dict[str, Any] = {"method": "QUEUE", "name": kind, "params": info}
    if rid not in (None, ""):
        job["meta"] = {"rid": str(rid)}
    for ours, theirs in (("id", "tid"), ("callback", "callback")):
        if fields.get(theirs) not in (None, ""):
            job[ours] = fields[theirs]
    try:
        submission = job_from_object(job, limits)
    except BadRequest as exc:
        field = {"id": "tid", "params": "task_info", "name": "type"}.get(exc.field or "", exc.field)
        raise BadRequest(exc.message, field) from None
    submission.job.source = "easytask"
    [(stored, _)] = await manager.submit([submission.job])
    return stored.seq


async def _query_task(request: Request) -> Any:
    """GET /querytask: with `num` or `name`, a worker fetches up to `num` jobs (leased to it); without either, a page
    of records. easyTask's published worker fetches with `type` and `num` only: its lease is held in the name of
    the client's address."""
    query = request.query_params
    kind = _kind(_one(request, "type"), "type")
    num = _int(request, "num", 1)
    if not 1 <= num <= 1000:
        raise BadRequest("num must be between 1 and 1000", "num")
    page, size = _int(request, "pageno", 1), _int(request, "pagesize", 10)
    check_page(page, size)
    if "name" in query or "num" in query:
        external: ExternalWorkers = request.state.external
        name = _one(request, "name") if "name" in query else _anonymous(request)
        jobs = await external.lease(kind, _worker(name), num, FETCH_LEASE_S)
        return [record(job) for job in jobs]
    manager: JobManager = request.state.manager
    found = await manager.list_jobs(method=Method.QUEUE.value, name=kind, page=page, size=size)
    return [record(job) for job in found.jobs]


async def _update_task(request: Request) -> Any:
    """POST /updatetask: `stat` 3 = done, -1 = error (the job's retry policy applies), with a `remark`."""
    external: ExternalWorkers = request.state.external
    fields, _ = await read_body(request, request.state.settings.max_body)
    stat = _stat(fields.get("stat"))
    remark = fields.get("remark")
    if remark is not None and not isinstance(remark, str):
        raise BadRequest("remark must be a string", "remark")
    job = await _find(request, fields)
    name = fields.get("name") or None  # a record posted back whole may carry an empty one
    if name is not None and (not isinstance(name, str) or not _WORKER.fullmatch(name)):
        raise BadRequest("name must be 1-128 printable characters", "name")
    holder = name or job.lease_holder or ""  # easyTask's update names no worker: the holder of the lease reports
    if stat == STAT_RUNNING:
        return None  # "processing": already so once fetched
    if stat == STAT_DONE:
        await external.complete(job.id, holder, None, remark)
    else:
        await external.fail(job.id, holder, remark or "the worker reported an error")
    return None


def _anonymous(request: Request) -> str:
    """The worker name of a fetch that gives none: the client's address (as easyTask's `client` column held it)."""
    return request.client.host if request.client is not None and request.client.host else "anonymous"


def _stat(value: Any) -> int:
    if value in ("2", "3", "-1"):  # a form sends every field as text
        value = int(value)
    if isinstance(value, bool) or value not in (STAT_RUNNING, STAT_DONE, STAT_ERROR):
        raise BadRequest("stat must be 3 (done), -1 (error) or 2 (processing)", "stat")
    return int(value)


async def _find(request: Request, fields: dict[str, Any]) -> Job:
    """The job an update names: by `tid` (poulpe's id), or by easyTask's numeric `id` among the leased jobs."""
    manager: JobManager = request.state.manager
    tid = fields.get("tid")
    if tid not in (None, ""):
        if not isinstance(tid, str) or not _ID.fullmatch(tid):
            raise BadRequest("tid must be 1 to 128 characters of A-Z a-z 0-9 . _ : -", "tid")
        job = await manager.get(tid)
        if job is None:
            raise NotFound(f"no task with tid {tid}")
        return job
    raw = fields.get("id")
    if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 18:
        raw = int(raw)
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
        raise BadRequest("id (the record id, a number) or tid is required", "id")
    page = 1
    while True:  # only running jobs can be reported: the leased ones, few
        found = await manager.list_jobs(status=Status.RUNNING, method=Method.QUEUE.value, page=page, size=500)
        for job in found.jobs:
            if job.seq == raw:
                return job
        if page * 500 >= found.total or page >= 20:
            raise NotFound(f"no task with id {raw} is being processed")
        page += 1


async def _say_hi(request: Request) -> str:
    external: ExternalWorkers = request.state.external
    external.hello(_kind(_one(request, "type"), "type"), _worker(_one(request, "name")), EASYTASK_BEAT_S)
    return "OK"


async def _beat(request: Request) -> str:
    external: ExternalWorkers = request.state.external
    external.heartbeat(_kind(_one(request, "type"), "type"), _worker(_one(request, "name")))
    return "OK"


async def _new_type(request: Request) -> str:
    """Task types need no creation in poulpe (a QUEUE job's name is its type): the name is only checked."""
    _kind(_one(request, "name"), "name")
    return "OK"


put_task = _answer(_put_task)
query_task = _answer(_query_task)
update_task = _answer(_update_task)
say_hi = _text(_say_hi)
beat = _text(_beat)
new_type = _text(_new_type)

"""kingtask's routes (SPEC 7): script and rpc tasks, their results and the day counts, in kingtask's answers.

Success is `200` with a bare JSON value (the task's uuid as a string, a count as a number); any error is `403`
with the message as a JSON string, as kingtask answered. Numbers may come as strings (`"start_time": "1445562622"`),
as its clients send them; a JSON body is read whatever its label, and fields kingtask's routes do not use are
ignored, as kingtask ignored them. A program run through these routes is judged by kingtask's rule: any output on
stderr is a failure, even with exit code 0 (its own example program reports errors that way).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from poulpe.compat.body import read_fields
from poulpe.errors import PoulpeError, Unavailable
from poulpe.job import FINAL, Job, Method, Status
from poulpe.job_in import ID_PATTERN, MAX_SECONDS, MAX_UNIX
from poulpe.manager import JobManager
from poulpe.responses import json_response
from poulpe.validate import Limits, job_from_object

_ID = re.compile(ID_PATTERN)
_DAY = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
RPC_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# the validator's field → the kingtask field the user sent
SCRIPT_NAMES = {"name": "bin_name", "params": "args", "at": "start_time", "timeout": "max_run_time"}
_RPC_NAMES = {"name": "url", "params": "args", "at": "start_time", "timeout": "max_run_time", "method": "method"}


class KingtaskError(Exception):
    """Answered as kingtask did: 403 and the message as a JSON string."""


def _refuse(message: str) -> Response:
    return json_response(message, 403)


async def script(request: Request) -> Response:
    """POST /api/v1/task/script (and /api/v1/task, as kingtask's README posts): an EXEC job."""
    return await _submit(request, script_job, SCRIPT_NAMES)


async def rpc(request: Request) -> Response:
    """POST /api/v1/task/rpc: an HTTP job."""
    return await _submit(request, _rpc_job, _RPC_NAMES)


async def _submit(request: Request, build: Any, names: dict[str, str]) -> Response:
    manager: JobManager = request.state.manager
    limits: Limits = request.state.limits
    try:
        fields = await read_fields(request, request.state.settings.max_body)
        job = await submit(manager, limits, build(fields))
    except KingtaskError as exc:
        return _refuse(str(exc))
    except Unavailable as exc:
        return json_response(exc.message, 503)
    except PoulpeError as exc:
        return _refuse(kingtask_message(exc, names))
    return json_response(job.id)


def kingtask_message(exc: PoulpeError, names: dict[str, str]) -> str:
    """A validation error in kingtask's words: the field named as the client sent it."""
    field = exc.field.split(".")[0] if exc.field else None
    return f"{names.get(field, field)}: {exc.message}" if field else exc.message


def is_task_id(value: str) -> bool:
    return bool(_ID.fullmatch(value))


async def submit(manager: JobManager, limits: Limits, job: dict[str, Any]) -> Job:
    """Validate and submit a kingtask job (its HTTP routes and its wire protocol both come here)."""
    submission = job_from_object(job, limits)
    submission.job.source = "kingtask"
    if submission.job.method is Method.EXEC:
        submission.job.fail_on_stderr = True
    [(stored, _)] = await manager.submit([submission.job])
    return stored


def script_job(fields: dict[str, Any]) -> dict[str, Any]:
    """kingtask's script task (`bin_name`, `args`, ...) as poulpe's job JSON; raises KingtaskError."""
    bin_name = _text(fields, "bin_name", required=True)
    args = fields.get("args")
    if args is None:
        argv: list[str] = []
    elif isinstance(args, str):
        argv = args.split()  # kingtask split its args on spaces, without any quoting
    elif isinstance(args, list) and all(isinstance(a, str) for a in args):
        argv = args
    else:
        raise KingtaskError("args must be a string of arguments separated by spaces")
    return {"method": "EXEC", "name": bin_name, "params": argv, **_timing(fields)}


def _rpc_job(fields: dict[str, Any]) -> dict[str, Any]:
    method = _text(fields, "method", required=True).upper()
    if method not in RPC_METHODS:
        raise KingtaskError(f"method must be one of {', '.join(RPC_METHODS)}")
    url = _text(fields, "url", required=True)
    args = _text(fields, "args", required=False)
    params: Any = None
    if args:
        try:
            decoded = msgspec.json.decode(args)
        except (msgspec.DecodeError, RecursionError):
            raise KingtaskError("args must be a JSON string") from None
        # GET and DELETE send an object's members as the query string; the other methods send args as the body
        params = decoded if method in ("GET", "DELETE") else args
    return {"method": method, "name": url, "params": params, **_timing(fields)}


def _timing(fields: dict[str, Any]) -> dict[str, Any]:
    """start_time, time_interval, max_run_time (and uuid) → at, retry, timeout (and id)."""
    out: dict[str, Any] = {}
    uuid = fields.get("uuid")
    if uuid not in (None, ""):
        if not isinstance(uuid, str) or not _ID.fullmatch(uuid):
            raise KingtaskError("uuid must be 1 to 128 characters of A-Z a-z 0-9 . _ : -")
        out["id"] = uuid
    start = _number(fields, "start_time", low=0, high=MAX_UNIX)
    if start:  # 0 or absent: now
        out["at"] = start
    timeout = _number(fields, "max_run_time", low=0, high=86400)
    if timeout is not None:
        if timeout <= 0:
            raise KingtaskError("max_run_time must be a number of seconds above 0")
        out["timeout"] = timeout
    out["retry"] = {"max": 0}  # kingtask retried only when told when to
    intervals = _intervals(fields.get("time_interval"))
    if intervals:
        out["retry"] = {"intervals": intervals}
    return out


def _intervals(value: Any) -> list[float]:
    """`"60 600 3600"` (or `[60, 600, 3600]`, as kingtask's Go client holds it) → one retry after each."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        parts: list[Any] = value.replace(",", " ").split()
    elif isinstance(value, list):
        parts = value
    else:
        raise KingtaskError('time_interval must be seconds separated by spaces, e.g. "60 600 3600"')
    if len(parts) > 100:
        raise KingtaskError("time_interval holds at most 100 intervals")
    intervals = [_seconds(part, "time_interval") for part in parts]
    if not all(0 <= interval <= MAX_SECONDS for interval in intervals):
        raise KingtaskError(f"time_interval must hold numbers of seconds from 0 to {MAX_SECONDS}")
    return intervals


def _text(fields: dict[str, Any], name: str, *, required: bool) -> str:
    value = fields.get(name)
    if value is None or value == "":
        if required:
            raise KingtaskError(f"{name} is required")
        return ""
    if not isinstance(value, str):
        raise KingtaskError(f"{name} must be a string")
    return value


def _number(fields: dict[str, Any], name: str, *, low: float, high: float) -> float | None:
    value = fields.get(name)
    if value is None or value == "":
        return None
    number = _seconds(value, name)
    if not low <= number <= high:
        raise KingtaskError(f"{name} must be between {low:g} and {high:g}")
    return number


def _seconds(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise KingtaskError(f"{name} must be a number")
    try:
        number = float(value)
    except ValueError:
        raise KingtaskError(f"{name} must be a number") from None
    if not math.isfinite(number):
        raise KingtaskError(f"{name} must be a number")
    return number


# --- results and counts ---------------------------------------------------------------------------------------
async def result(request: Request) -> Response:
    """GET /api/v1/task/result/{id}: {"is_result_exist", "is_success", "message"}."""
    job_id: str = request.path_params["id"]
    manager: JobManager = request.state.manager
    job = await manager.get(job_id) if _ID.fullmatch(job_id) else None
    if job is None:
        return _refuse(f"no task with uuid {job_id[:128]}")
    return json_response(reply_of(job))


def reply_of(job: Job) -> dict[str, Any]:
    """kingtask's result record: `is_result_exist` 0 while the job is not final."""
    if not job.final:
        return {"is_result_exist": 0, "is_success": 0, "message": ""}
    ok = job.status is Status.SUCCEEDED
    return {"is_result_exist": 1, "is_success": int(ok), "message": message_of(job)}


def message_of(job: Job) -> str:
    """What kingtask put in `message`: the program's stdout or the response body; on failure stderr or the error.
    Trailing newlines are trimmed, as kingtask trimmed them (a program printing `57\n` answers "57")."""
    return _message(job).rstrip("\n")


def _message(job: Job) -> str:
    output = job.result if isinstance(job.result, dict) else {}
    if job.status is Status.SUCCEEDED:
        if job.method is Method.EXEC:
            return str(output.get("stdout", ""))
        if "body" in output:
            return str(output["body"])
        return job.result if isinstance(job.result, str) else msgspec.json.encode(job.result).decode()
    if job.method is Method.EXEC and output.get("stderr"):
        return str(output["stderr"])
    return job.error or job.status.value


async def count_undo(request: Request) -> Response:
    """GET /api/v1/task/count/undo: how many jobs are not final yet."""
    manager: JobManager = request.state.manager
    counts = await manager.counts()
    return json_response(sum(n for status, n in counts.items() if Status(status) not in FINAL))


async def count_success(request: Request) -> Response:
    return await _day_count(request, "succeeded")


async def count_failure(request: Request) -> Response:
    return await _day_count(request, "failed")


async def _day_count(request: Request, column: str) -> Response:
    """GET /api/v1/task/result/{success|failure}/{YYYY-MM-DD}: kept by the store per UTC day as jobs finish."""
    day: str = request.path_params["date"]
    try:
        if not _DAY.fullmatch(day):
            raise ValueError(day)
        dt.date.fromisoformat(day)
    except ValueError:
        return _refuse(f"date must be a day as YYYY-MM-DD, not {day[:32]!r}")
    manager: JobManager = request.state.manager
    try:
        counts = await manager.day_counts(day)
    except Unavailable as exc:
        return json_response(exc.message, 503)
    return json_response(counts[column])

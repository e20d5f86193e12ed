"""The compatibility routes (kingtask, easyTask) in /openapi.json: their request shapes and their own answers.

Their bodies are read leniently as the old clients send them (compat/body.py: a JSON object whatever its label, or
a form), so these structs describe them for the document only; fields the routes do not use are ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from poulpe.api_workers import WORKER_PATTERN
from poulpe.job_in import MAX_UNIX
from poulpe.openapi.answers import Error
from poulpe.openapi.build import Answer, Op, Param
from poulpe.validate import TYPE_PATTERN

_LENIENT = (
    "Fields the route does not use are ignored, as {who} ignored them. A body that opens with `{{` is read as JSON "
    "whatever its Content-Type (curl's -d labels it a form)."
)
_UNAUTHORIZED = {401: Answer(Error, "Missing or wrong bearer token")}


# --- kingtask ---------------------------------------------------------------------------------------------------------
class _KingtaskTiming(msgspec.Struct, kw_only=True):
    uuid: Annotated[str | None, Meta(description="The task's id; generated when absent.")] = None
    start_time: Annotated[
        Annotated[float, Meta(ge=0, le=MAX_UNIX)] | str | None,
        Meta(description="Unix seconds (a number or a string of one); 0 or absent: now."),
    ] = None
    time_interval: Annotated[
        str | list[float | str] | None,
        Meta(description='Seconds separated by spaces ("60 600 3600"): one retry after each. Absent: no retry.'),
    ] = None
    max_run_time: Annotated[
        float | str | None, Meta(description="Limit of one attempt, seconds (default --job_timeout).")
    ] = None
    index: Annotated[Any, Meta(description="Accepted and ignored, as kingtask's clients send it.")] = None


class KingtaskScript(_KingtaskTiming, kw_only=True):
    bin_name: Annotated[str, Meta(description="A program's file name inside --exec_dir.")]
    args: Annotated[
        str | list[str] | None, Meta(description="Arguments separated by spaces (no quoting, as kingtask split them).")
    ] = None


class KingtaskRpc(_KingtaskTiming, kw_only=True):
    method: Annotated[str, Meta(description="GET, POST, PUT, PATCH or DELETE (any letter case).")]
    url: Annotated[str, Meta(description="An http or https URL.")]
    args: Annotated[
        str | None, Meta(description="JSON text: the body of a POST/PUT/PATCH, the query (an object) of a GET/DELETE.")
    ] = None


class KingtaskResult(msgspec.Struct):
    is_result_exist: Literal[0, 1]
    is_success: Literal[0, 1]
    message: str


_KINGTASK_REFUSALS = {
    403: Answer(str, "kingtask's error answer: the message as a JSON string"),
    503: Answer(str, "Store unreachable or shutting down: nothing was accepted, retry"),
    **_UNAUTHORIZED,
}


def _kingtask_submit(path: str, operation: str, summary: str, body: Any) -> Op:
    described = Annotated[body, Meta(description=_LENIENT.format(who="kingtask"))]
    answers = {200: Answer(str, "The task's uuid"), **_KINGTASK_REFUSALS}
    return Op("post", path, operation, summary, answers, body=described, tags=("kingtask",))


def _kingtask_count(path: str, operation: str, summary: str, *names: str) -> Op:
    params = tuple(Param(name, "path", Annotated[str, Meta(min_length=1)], required=True) for name in names)
    answers = {200: Answer(Annotated[int, Meta(ge=0)], "The count"), **_KINGTASK_REFUSALS}
    return Op("get", path, operation, summary, answers, params=params, tags=("kingtask",))


_SCRIPT = "kingtask: run a program in --exec_dir (an EXEC job)"
KINGTASK = [
    _kingtask_submit("/api/v1/task", "kingtaskTask", f"{_SCRIPT}; the path kingtask's README posts to", KingtaskScript),
    _kingtask_submit("/api/v1/task/script", "kingtaskScript", _SCRIPT, KingtaskScript),
    _kingtask_submit("/api/v1/task/rpc", "kingtaskRpc", "kingtask: call a URL (an HTTP job)", KingtaskRpc),
    Op(
        "get",
        "/api/v1/task/result/{id}",
        "kingtaskResult",
        "kingtask: a task's result",
        {
            200: Answer(
                KingtaskResult,
                "is_result_exist 0 while the task is not final; message: stdout or response body, or the error",
            ),
            **_KINGTASK_REFUSALS,
        },
        params=(Param("id", "path", str, required=True),),
        tags=("kingtask",),
    ),
    _kingtask_count("/api/v1/task/count/undo", "kingtaskUndo", "kingtask: how many tasks are not final yet"),
    _kingtask_count(
        "/api/v1/task/result/success/{date}",
        "kingtaskSuccesses",
        "kingtask: tasks that succeeded on a UTC day (YYYY-MM-DD)",
        "date",
    ),
    _kingtask_count(
        "/api/v1/task/result/failure/{date}",
        "kingtaskFailures",
        "kingtask: tasks that ended dead on a UTC day (YYYY-MM-DD)",
        "date",
    ),
]

# --- easyTask ---------------------------------------------------------------------------------------------------------
Kind = Annotated[str, Meta(pattern=TYPE_PATTERN)]
WorkerName = Annotated[str, Meta(pattern=WORKER_PATTERN)]


class EasytaskPut(msgspec.Struct, kw_only=True):
    rid: Annotated[str | int | None, Meta(description="Your record id, kept in meta.rid.")] = None
    tid: Annotated[
        Annotated[str, Meta(pattern="^(?:[A-Za-z0-9._:-]{1,128})?$")] | None,
        Meta(description="The job id to use (a known one is not stored twice)."),
    ] = None
    task_type: Annotated[Any, Meta(description="Not used: the type is the one in the path, as easyTask took it.")] = (
        None
    )
    task_info: Annotated[Any, Meta(description="Any JSON: the QUEUE job's params, handed to the worker.")] = None
    callback: Annotated[str | None, Meta(description="An http(s) URL the final result is POSTed to.")] = None


class EasytaskUpdate(msgspec.Struct, kw_only=True):
    """Fields the route does not use are ignored: easyTask's Go worker posts back the whole record."""

    id: (
        Annotated[
            Annotated[int, Meta(ge=1)] | Annotated[str, Meta(pattern="^[0-9]{1,18}$")],
            Meta(description="The record id (or give tid)."),
        ]
        | UnsetType
    ) = UNSET
    tid: Annotated[str | None, Meta(description="poulpe's job id.")] = None
    stat: Annotated[Literal[2, 3, -1, "2", "3", "-1"], Meta(description="3 done, -1 error (retried by policy).")]
    remark: str | None = None
    name: Annotated[WorkerName | None, Meta(description="The worker; default: the lease holder.")] = None


class EasytaskRecord(msgspec.Struct, kw_only=True):
    id: Annotated[int, Meta(description="The record id: poulpe's acceptance number.")]
    tid: Annotated[str, Meta(description="poulpe's job id.")]
    rid: str
    task_type: str
    task_info: Any
    stat: Annotated[Literal[1, 2, 3, -1], Meta(description="1 new, 2 processing, 3 done, -1 error.")]
    add_time: str
    update_time: str
    rapper: str | UnsetType = UNSET
    client: Annotated[str, Meta(description="The worker holding or last running the task.")]
    remark: str


class EasytaskAdded(msgspec.Struct):
    code: Literal[0]
    data: Annotated[int, Meta(description="The record id.")]


class EasytaskRecords(msgspec.Struct):
    code: Literal[0]
    data: list[EasytaskRecord]


class EasytaskDone(msgspec.Struct):
    code: Literal[0]
    data: None


class EasytaskRefusal(msgspec.Struct):
    code: Literal[-1]
    errmsg: str


_EASYTASK_WORDS = {
    400: "Bad input (errmsg names the field)",
    404: "No such task",
    409: "The task is not held by this worker",
    413: "Body too large",
    503: "Store unreachable or shutting down",
}


def _easytask_answers(ok: Any, *codes: int) -> dict[int, Answer]:
    refusals = {code: Answer(EasytaskRefusal, _EASYTASK_WORDS[code]) for code in codes}
    return {200: Answer(ok, "Done"), **refusals, **_UNAUTHORIZED}


def _query(name: str, shape: Any, description: str, *, required: bool = False, number: bool = False) -> Param:
    """Given empty (`?pagesize=`), an optional number is as if absent."""
    return Param(name, "query", shape, description, required=required, allow_empty=number)


def _easytask_text(path: str, operation: str, summary: str, params: tuple[Param, ...]) -> Op:
    """sayhi, beat and newtype answer bare text, as easyTask did: `OK`, or the error sentence."""
    answers = {
        200: Answer(Literal["OK"], "Done: the bare text OK", "text/plain"),
        400: Answer(str, "Bad input: the error sentence (naming the parameter)", "text/plain"),
        **_UNAUTHORIZED,
    }
    return Op("get", path, operation, summary, answers, params=params, tags=("easyTask",))


_TYPE = _query("type", Kind, "The task type.", required=True)
_PAGED = (
    _TYPE,
    _query("name", WorkerName, "A worker's name: fetch (lease) tasks for it instead of listing."),
    _query(
        "num",
        Annotated[int, Meta(ge=1, le=1000)],
        "How many to fetch: given, with or without name, the request is a fetch (default 1).",
        number=True,
    ),
    _query("pageno", Annotated[int, Meta(ge=1, le=1_000_000)], "Page (default 1).", number=True),
    _query("pagesize", Annotated[int, Meta(ge=1, le=1000)], "Page size (default 10).", number=True),
)
_TYPE_AND_NAME = (_TYPE, _query("name", WorkerName, "The worker's name.", required=True))

_EASYTASK_PUT = Annotated[
    EasytaskPut, Meta(description=_LENIENT.format(who="easyTask"), extra_json_schema={"minProperties": 1})
]
EASYTASK = [
    Op(
        "put",
        "/api/putask/{type}",
        "easytaskPut",
        "easyTask: add a task (a QUEUE job of this type); data is its record id",
        _easytask_answers(EasytaskAdded, 400, 413, 503),
        params=(Param("type", "path", Kind, required=True),),
        body=_EASYTASK_PUT,
        tags=("easyTask",),
    ),
    Op(
        "get",
        "/querytask",
        "easytaskQuery",
        "easyTask: a page of task records, or with `num` or `name` a worker's fetch (the tasks are leased to it)",
        _easytask_answers(EasytaskRecords, 400, 503),
        params=_PAGED,
        tags=("easyTask",),
    ),
    Op(
        "post",
        "/updatetask",
        "easytaskUpdate",
        "easyTask: report a fetched task done (stat 3) or failed (stat -1)",
        _easytask_answers(EasytaskDone, 400, 404, 409, 413, 503),
        body=EasytaskUpdate,
        tags=("easyTask",),
    ),
    _easytask_text("/sayhi", "easytaskHello", "easyTask: a worker says hi (it then beats every 5 s)", _TYPE_AND_NAME),
    _easytask_text("/beat", "easytaskBeat", "easyTask: a worker's heartbeat", _TYPE_AND_NAME),
    _easytask_text(
        "/newtype",
        "easytaskNewType",
        "easyTask: declare a task type (nothing to create in poulpe: the name is checked)",
        (_query("name", Kind, "The task type.", required=True),),
    ),
]

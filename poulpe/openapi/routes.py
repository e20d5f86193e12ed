"""The table of poulpe's own routes, its workers' routes and flow control, as /openapi.json describes them."""

from __future__ import annotations

from typing import Annotated, Any

from msgspec import Meta

from poulpe.api_workers import BeatIn, CompleteIn, FailIn, HelloIn, LeaseIn
from poulpe.job import Method, Status
from poulpe.job_in import MAX_BATCH, JobIn, any_case
from poulpe.keys import KEY_PATTERN, KeyUpdate
from poulpe.openapi.answers import (
    Ack,
    DeadJob,
    DeadPage,
    Deleted,
    Document,
    Error,
    Healthy,
    JobPage,
    KeyPage,
    KeyState,
    LeasedJobs,
    Paused,
    Result,
    SysInfo,
    Unhealthy,
    WorkerKnown,
    Workers,
)
from poulpe.openapi.build import Answer, Op, Param, one_of
from poulpe.validate import TYPE_PATTERN

_WORDS = {
    400: "Bad input: the field is named",
    401: "Missing or wrong bearer token",
    404: "No such job (or it expired), or no such dead letter",
    409: "Conflict with the job's state",
    413: "Body larger than --max_body",
    415: "Body not sent as application/json",
    503: "Store unreachable or shutting down: nothing was accepted, retry (with `stored: unknown`: retry with the ids)",
}


def errors(*codes: int, words: dict[int, str] | None = None) -> dict[int, Answer]:
    """The error answers (`Error`) of these codes, and 401: every route but the public ones takes the token."""
    said = {**_WORDS, **(words or {})}
    return {code: Answer(Error, said[code]) for code in (*codes, 401)}


def query(name: str, shape: Any, description: str) -> Param:
    """An optional query parameter; given empty (`?page=`) it is as if absent."""
    return Param(name, "query", shape, description, allow_empty=True)


Id = Annotated[str, Meta(min_length=1)]
JOB_ID = Param("id", "path", Id, required=True, example="order-42-mail")
PAGE = Annotated[int, Meta(ge=1, le=1_000_000)]
SIZE = Annotated[int, Meta(ge=1, le=1000)]
Batch = Annotated[list[JobIn], Meta(min_length=1, max_length=MAX_BATCH)]
Slot = one_of(Ack, Result, Error)
Slots = list[Slot]  # type: ignore[valid-type]
Text = str

EXAMPLES = {
    "http": {
        "summary": "A POST in 30 s, retried 3 times 10 s apart",
        "value": {
            "id": "order-42-mail",
            "method": "POST",
            "name": "http://127.0.0.1:9000/hook",
            "params": {"order": 42},
            "delay": 30,
            "retry": {"max": 3, "interval": 10},
        },
    },
    "wait": {
        "summary": "A GET whose answer waits up to 5 s for the result",
        "value": {"method": "GET", "name": "http://127.0.0.1:9000/ping", "params": {"a": 1}, "wait": 5},
    },
    "queue": {
        "summary": "A payload for external workers of type `resize`",
        "value": {"method": "QUEUE", "name": "resize", "params": {"image": "a.png"}, "meta": {"user": 7}},
    },
    "batch": {
        "summary": "A batch: each job is answered in its own slot",
        "value": [
            {"method": "GET", "name": "http://127.0.0.1:9000/ping", "params": "a=1&b=2", "cc": "0"},
            {"method": "queue", "name": "resize", "at": "2030-01-01T09:00:00+01:00", "timeout": 60},
        ],
    },
}


def _paging(page: str = "Page number, from 1 (default 1).") -> tuple[Param, ...]:
    return query("page", PAGE, page), query("size", SIZE, "Page size (default 50).")


def _page(operation: str, path: str, media: str, summary: str) -> Op:
    return Op("get", path, operation, summary, {200: Answer(Text, summary, media)}, public=True)


JOBS = [
    Op(
        "post",
        "/task_in_queue",
        "submit",
        "Submit one job or a batch; the answer comes once they are stored",
        body=one_of(JobIn, Batch),
        body_description=f"One job, or a batch of 1 to {MAX_BATCH}: a bad job in a batch fails only its own slot "
        "of the answer (207).",
        body_examples=EXAMPLES,
        answers={
            200: Answer(Result, "Final within `wait`, or a known id (`duplicate: true`)"),
            202: Answer(
                one_of(Ack, Result, Slots),
                "Accepted (the acknowledgement, or the state with `result: Timeout` after `wait`); for a batch, one "
                "slot per job",
            ),
            207: Answer(Slots, "A batch where some slots hold an error; the other jobs are stored"),
            **errors(400, 413, 415, 503),
        },
    ),
    Op(
        "get",
        "/task_resp/{id}",
        "longPoll",
        "A job's result, as soon as it is final or after `timeout` seconds",
        params=(
            JOB_ID,
            query(
                "timeout",
                Annotated[float, Meta(ge=0, le=300)],
                "Seconds to wait for the job to be final (default 30).",
            ),
        ),
        answers={
            200: Answer(Result, "Final"),
            202: Answer(Result, "Not final when `timeout` passed"),
            **errors(400, 404),
        },
    ),
    Op(
        "get",
        "/jobs",
        "listJobs",
        "A page of jobs, newest first",
        params=(
            query(
                "status",
                Annotated[str, Meta(pattern=any_case(s.value for s in Status))],
                "Only jobs in this status (any letter case).",
            ),
            query(
                "method",
                Annotated[str, Meta(pattern=any_case(m.value for m in Method))],
                "Only jobs of this method (any letter case).",
            ),
            query("name", str, "Only jobs with this exact name."),
            query("type", str, "Only QUEUE jobs of this task type; goes with method QUEUE or none."),
            *_paging(),
        ),
        answers={200: Answer(JobPage, "A page"), **errors(400)},
    ),
    Op(
        "get",
        "/jobs/{id}",
        "getJob",
        "A job's state now",
        params=(JOB_ID,),
        answers={200: Answer(Result, "Final"), 202: Answer(Result, "Not final yet"), **errors(404)},
    ),
    Op(
        "delete",
        "/jobs/{id}",
        "cancelJob",
        "Cancel a job that has not started",
        params=(JOB_ID,),
        answers={200: Answer(Result, "Cancelled"), **errors(404, 409)},
    ),
    Op(
        "get",
        "/dead",
        "listDead",
        "Dead jobs: those whose letter is owed first, then the letters, newest day first",
        params=_paging(),
        answers={200: Answer(DeadPage, "A page"), **errors(400)},
    ),
    Op(
        "get",
        "/dead/{id}",
        "getDead",
        "A dead job (from the store, or its letter once the store forgot it): history, last result",
        params=(JOB_ID,),
        answers={200: Answer(DeadJob, "The dead job"), **errors(404)},
    ),
    Op(
        "delete",
        "/dead/{id}",
        "deleteDead",
        "Forget a dead job: from the store, and its letter (now, or once the directory lets it)",
        params=(JOB_ID,),
        answers={200: Answer(Deleted, "Deleted"), **errors(404, 503)},
    ),
    Op(
        "post",
        "/dead/{id}/retry",
        "retryDead",
        "Run a dead job again with fresh attempts (its letter goes once the job is stored)",
        params=(JOB_ID,),
        answers={202: Answer(Ack, "Queued again"), **errors(404, 409, 503)},
    ),
    Op(
        "get",
        "/health",
        "health",
        "Whether the store answers and takes writes; no token needed",
        public=True,
        answers={
            200: Answer(
                Healthy,
                "Healthy (with --kafka_servers, the Kafka state as detail: poulpe serves HTTP with Kafka down)",
            ),
            503: Answer(
                Unhealthy, "Store unreachable, store cannot take writes (`writable: false`, a full disk), or draining"
            ),
        },
    ),
    Op(
        "get",
        "/sys_info",
        "sysInfo",
        "Workers, queues and counts; never a secret",
        answers={200: Answer(SysInfo, "State"), **errors()},
    ),
    Op("get", "/openapi.json", "openapi", "This document", answers={200: Answer(Document, "OpenAPI"), **errors()}),
    Op(
        "get",
        "/metrics",
        "metrics",
        "Prometheus text format: jobs by method and status, workers, attempt and store latency",
        answers={200: Answer(Text, "Metrics", "text/plain"), **errors()},
    ),
    _page("dashboard", "/", "text/html", "The dashboard page; no token needed to load it (its data routes need it)"),
    _page("dashboardScript", "/dashboard.js", "text/javascript", "The dashboard's script"),
    _page("dashboardStyle", "/dashboard.css", "text/css", "The dashboard's style"),
]

# --- flow control (SPEC 10.1) -----------------------------------------------------------------------------------------
_KEY_WORDS = {
    404: "No such job (or it expired); for a key: a path no key can have",
    503: "Store unreachable: nothing was changed, retry",
}
KEY = Param(
    "key",
    "path",
    Annotated[str, Meta(pattern=KEY_PATTERN)],
    "1-128 of A-Z a-z 0-9 . _ : @ / - (a `/` is written as is in the path).",
    required=True,
    example="shop-42",
)


def _key_errors(*codes: int) -> dict[int, Answer]:
    return errors(*codes, 503, words=_KEY_WORDS)


KEYS = [
    Op(
        "get",
        "/keys",
        "listKeys",
        "Keys with unfinished jobs or limits of their own, most waiting first",
        params=_paging("Page, from 1."),
        answers={200: Answer(KeyPage, "A page of keys"), **_key_errors(400)},
    ),
    Op(
        "get",
        "/keys/{key}",
        "getKey",
        "A key's limits in force, pause, and jobs waiting and running",
        params=(KEY,),
        answers={200: Answer(KeyState, "The key"), **_key_errors(400, 404)},
    ),
    Op(
        "put",
        "/keys/{key}",
        "putKey",
        "Set a key's limits or pause (partial: omitted fields keep their value)",
        params=(KEY,),
        body=KeyUpdate,
        answers={200: Answer(KeyState, "The key now"), **_key_errors(400, 404)},
    ),
    Op(
        "delete",
        "/keys/{key}",
        "deleteKey",
        "Remove a key's own limits and pause (its jobs stay)",
        params=(KEY,),
        answers={200: Answer(KeyState, "The key now"), **_key_errors(400, 404)},
    ),
    Op(
        "post",
        "/pause",
        "pauseAll",
        "No job starts anywhere until /resume (intake goes on; survives restarts)",
        answers={200: Answer(Paused, "Paused"), **_key_errors()},
    ),
    Op(
        "post",
        "/resume",
        "resumeAll",
        "Jobs start again after /pause",
        answers={200: Answer(Paused, "Resumed"), **_key_errors()},
    ),
    Op(
        "post",
        "/jobs/{id}/run",
        "runJobNow",
        "A scheduled or retrying job becomes due now (its key's limits still apply)",
        params=(Param("id", "path", Id, required=True),),
        answers={200: Answer(Result, "The job, due now"), **_key_errors(404, 409)},
    ),
]

# --- external workers (SPEC 6) ----------------------------------------------------------------------------------------
_WORKER_WORDS = {
    404: "No such job (or it expired)",
    409: "The job is not held by this worker (or not a QUEUE job)",
    413: "Body too large",
    503: "Store unreachable or shutting down",
}
TYPE = Param("type", "path", Annotated[str, Meta(pattern=TYPE_PATTERN)], required=True)


def _worker_post(operation: str, summary: str, path: str, body: Any, ok: Answer) -> Op:
    by_type = "{type}" in path
    codes = (400, 413, 415, 503) if by_type else (400, 404, 409, 413, 415, 503)
    param = TYPE if by_type else Param("id", "path", Id, required=True)
    return Op(
        "post",
        path,
        operation,
        summary,
        params=(param,),
        body=body,
        tags=("workers",),
        answers={200: ok, **errors(*codes, words=_WORKER_WORDS)},
    )


WORKERS = [
    Op(
        "get",
        "/workers",
        "listWorkers",
        "External workers this process knows: last beat and the jobs each holds",
        tags=("workers",),
        answers={200: Answer(Workers, "The workers"), **errors()},
    ),
    _worker_post(
        "workerHello",
        "A worker announces itself; with beat_s it must beat that often (3 missed: its jobs go back)",
        "/workers/{type}/hello",
        HelloIn,
        Answer(WorkerKnown, "Known"),
    ),
    _worker_post(
        "workerHeartbeat", "A worker is alive", "/workers/{type}/heartbeat", BeatIn, Answer(WorkerKnown, "Known")
    ),
    _worker_post(
        "workerLease",
        "Up to n due QUEUE jobs of this type, running for this worker until lease_s from now",
        "/workers/{type}/lease",
        LeaseIn,
        Answer(LeasedJobs, "The jobs leased (maybe none)"),
    ),
    _worker_post(
        "completeJob",
        "The lease holder reports the job done",
        "/jobs/{id}/complete",
        CompleteIn,
        Answer(Result, "The job, final"),
    ),
    _worker_post(
        "failJob",
        "The lease holder reports the attempt failed: the job's retry policy applies",
        "/jobs/{id}/fail",
        FailIn,
        Answer(Result, "The job, retrying or dead"),
    ),
]

"""The routes of external workers (SPEC 6): hello, heartbeat, lease, complete, fail, and the list of workers."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from poulpe.api import path_job_id
from poulpe.checks import TYPE_RULE, is_task_type, split_msgspec
from poulpe.errors import BadRequest
from poulpe.external import ExternalWorkers
from poulpe.job import WORD_OK, Job
from poulpe.job_in import null_raw
from poulpe.responses import json_response, read_json_body

WORKER_PATTERN = r"^[^\x00-\x1f\x7f]{1,128}$"  # any printable name: easyTask workers name themselves freely
_WORKER_WIRE = WORKER_PATTERN.removesuffix("$") + r"\Z"  # Python's `$` would also match before a final newline
BODY_CAP = 1024 * 1024
T = TypeVar("T")
WorkerName = Annotated[str, msgspec.Meta(pattern=_WORKER_WIRE)]


class HelloIn(msgspec.Struct, forbid_unknown_fields=True):
    worker: WorkerName
    beat_s: Annotated[float, msgspec.Meta(gt=0, le=3600)] | None = None


class BeatIn(msgspec.Struct, forbid_unknown_fields=True):
    worker: WorkerName


class LeaseIn(msgspec.Struct, forbid_unknown_fields=True):
    worker: WorkerName
    n: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1
    lease_s: Annotated[float, msgspec.Meta(gt=0, le=86400)] = 60.0
    wait: Annotated[float, msgspec.Meta(ge=0, le=300)] = 0.0


class CompleteIn(msgspec.Struct, forbid_unknown_fields=True):
    worker: WorkerName
    result: msgspec.Raw = msgspec.field(default_factory=null_raw)
    remark: Annotated[str, msgspec.Meta(max_length=65536)] | None = None


class FailIn(msgspec.Struct, forbid_unknown_fields=True):
    worker: WorkerName
    error: Annotated[str, msgspec.Meta(max_length=65536)] | None = None
    result: msgspec.Raw = msgspec.field(default_factory=null_raw)


def external(request: Request) -> ExternalWorkers:
    workers: ExternalWorkers = request.state.external
    return workers


def task_type(request: Request) -> str:
    kind: str = request.path_params["type"]
    if not is_task_type(kind):
        raise BadRequest(f"the task type is {TYPE_RULE}", "type")
    return kind


async def _body(request: Request, shape: type[T]) -> T:
    raw = await read_json_body(request, BODY_CAP)
    try:
        return msgspec.json.decode(raw, type=shape)
    except msgspec.ValidationError as exc:
        field, reason = split_msgspec(str(exc))
        raise BadRequest(reason, field) from None
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        raise BadRequest("body is not valid JSON") from None


def _result(raw: msgspec.Raw) -> Any:
    try:
        return msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError):  # pragma: no cover (the body decoded already)
        raise BadRequest("result is not valid JSON", "result") from None


def leased(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "type": job.name,
        "params": job.params,
        "meta": job.meta,
        "attempt": job.attempts,
        "lease_until": job.lease_until,
    }


async def hello(request: Request) -> Response:
    kind = task_type(request)
    body = await _body(request, HelloIn)
    worker = external(request).hello(kind, body.worker, body.beat_s)
    return json_response({"result": WORD_OK, **worker.to_json()})


async def heartbeat(request: Request) -> Response:
    kind = task_type(request)
    body = await _body(request, BeatIn)
    worker = external(request).heartbeat(kind, body.worker)
    return json_response({"result": WORD_OK, **worker.to_json()})


async def lease(request: Request) -> Response:
    kind = task_type(request)
    body = await _body(request, LeaseIn)
    jobs = await external(request).lease(kind, body.worker, body.n, body.lease_s, body.wait)
    return json_response({"jobs": [leased(job) for job in jobs]})


async def complete(request: Request) -> Response:
    job_id = path_job_id(request)
    body = await _body(request, CompleteIn)
    job = await external(request).complete(job_id, body.worker, _result(body.result), body.remark)
    return json_response(job.to_result())


async def fail(request: Request) -> Response:
    job_id = path_job_id(request)
    body = await _body(request, FailIn)
    job = await external(request).fail(job_id, body.worker, body.error, _result(body.result))
    return json_response(job.to_result())


async def list_workers(request: Request) -> Response:
    return json_response({"workers": external(request).listing()})


def routes() -> list[Route]:
    return [
        Route("/workers", list_workers, methods=["GET"]),
        Route("/workers/{type}/hello", hello, methods=["POST"]),
        Route("/workers/{type}/heartbeat", heartbeat, methods=["POST"]),
        Route("/workers/{type}/lease", lease, methods=["POST"]),
        Route("/jobs/{id}/complete", complete, methods=["POST"]),
        Route("/jobs/{id}/fail", fail, methods=["POST"]),
    ]

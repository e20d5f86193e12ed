"""The external workers' routes (SPEC 6) in /openapi.json."""

from __future__ import annotations

from typing import Any

from poulpe.api_workers import WORKER_PATTERN
from poulpe.compat.openapi_parts import INT, STR, json_answer, ref, unauthorized
from poulpe.validate import TYPE_PATTERN


def _poulpe_errors(*codes: int) -> dict[str, Any]:
    words = {
        400: "Bad input: the field is named",
        404: "No such job (or it expired)",
        409: "The job is not held by this worker (or not a QUEUE job)",
        413: "Body too large",
        415: "Body not sent as application/json",
        503: "Store unreachable or shutting down",
    }
    return {str(code): json_answer(ref("Error"), words[code]) for code in codes} | unauthorized()


def _body(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    schema = {"type": "object", "required": required, "properties": properties, "additionalProperties": False}
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _worker_post(operation: str, summary: str, body: dict[str, Any], ok: dict[str, Any], path: str) -> dict[str, Any]:
    param = (
        {"name": "type", "in": "path", "required": True, "schema": {"type": "string", "pattern": TYPE_PATTERN}}
        if path == "type"
        else {"name": "id", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
    )
    errors = (400, 413, 415, 503) if path == "type" else (400, 404, 409, 413, 415, 503)
    return {
        "post": {
            "operationId": operation,
            "summary": summary,
            "tags": ["workers"],
            "parameters": [param],
            "requestBody": body,
            "responses": {"200": ok, **_poulpe_errors(*errors)},
        }
    }


def worker_paths() -> dict[str, Any]:
    worker = {"type": "string", "pattern": WORKER_PATTERN, "description": "The worker's name (printable, 1-128)."}
    listed: dict[str, Any] = {
        "type": "object",
        "required": ["type", "name", "last_beat", "jobs"],
        "properties": {
            "type": STR,
            "name": STR,
            "last_beat": {"type": "number"},
            "jobs": {"type": "array", "items": STR, "description": "Ids of the jobs it holds a lease on."},
        },
    }
    beat_ok = json_answer({**listed, "properties": {**listed["properties"], "result": {"enum": ["OK"]}}}, "Known")
    leased = {
        "type": "object",
        "required": ["id", "type", "params", "attempt", "lease_until"],
        "properties": {
            "id": STR,
            "type": STR,
            "params": {},
            "meta": {"type": ["object", "null"]},
            "attempt": INT,
            "lease_until": {"type": "number"},
        },
    }
    text = {"type": ["string", "null"], "maxLength": 65536}
    return {
        "/workers": {
            "get": {
                "operationId": "listWorkers",
                "summary": "External workers this process knows: last beat and the jobs each holds",
                "tags": ["workers"],
                "responses": {
                    "200": json_answer(
                        {
                            "type": "object",
                            "required": ["workers"],
                            "properties": {"workers": {"type": "array", "items": listed}},
                        },
                        "The workers",
                    ),
                    **unauthorized(),
                },
            }
        },
        "/workers/{type}/hello": _worker_post(
            "workerHello",
            "A worker announces itself; with beat_s it must beat that often (3 missed: its jobs go back)",
            _body(
                {"worker": worker, "beat_s": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 3600}},
                ["worker"],
            ),
            beat_ok,
            "type",
        ),
        "/workers/{type}/heartbeat": _worker_post(
            "workerHeartbeat", "A worker is alive", _body({"worker": worker}, ["worker"]), beat_ok, "type"
        ),
        "/workers/{type}/lease": _worker_post(
            "workerLease",
            "Up to n due QUEUE jobs of this type, running for this worker until lease_s from now",
            _body(
                {
                    "worker": worker,
                    "n": {"type": "integer", "minimum": 1, "maximum": 1000},
                    "lease_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 86400},
                    "wait": {
                        "type": "number",
                        "minimum": 0,
                        "maximum": 300,
                        "description": "Hold an empty answer up to this many seconds until a job is due.",
                    },
                },
                ["worker"],
            ),
            json_answer(
                {"type": "object", "required": ["jobs"], "properties": {"jobs": {"type": "array", "items": leased}}},
                "The jobs leased (maybe none)",
            ),
            "type",
        ),
        "/jobs/{id}/complete": _worker_post(
            "completeJob",
            "The lease holder reports the job done",
            _body({"worker": worker, "result": {}, "remark": text}, ["worker"]),
            json_answer(ref("Result"), "The job, final"),
            "id",
        ),
        "/jobs/{id}/fail": _worker_post(
            "failJob",
            "The lease holder reports the attempt failed: the job's retry policy applies",
            _body({"worker": worker, "error": text, "result": {}}, ["worker"]),
            json_answer(ref("Result"), "The job, retrying or dead"),
            "id",
        ),
    }

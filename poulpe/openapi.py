"""GET /openapi.json: the description of every route. The job schema comes from the validator's own struct."""

from __future__ import annotations

from typing import Any

import msgspec

from poulpe import __version__
from poulpe.job import Method, Status
from poulpe.validate import MAX_BATCH, JobIn

_NUM = {"type": "number"}
_NUM_OR_NULL = {"type": ["number", "null"]}
_STR_OR_NULL = {"type": ["string", "null"]}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _schemas() -> dict[str, Any]:
    _, components = msgspec.json.schema_components([JobIn], ref_template="#/components/schemas/{name}")
    job_in = components["JobIn"]
    job_in["properties"]["method"] = {
        "type": "string",
        "enum": [m.value for m in Method] + [m.value.lower() for m in Method],
        "description": "What the job does (case-insensitive).",
    }
    for field in ("params", "meta"):
        job_in["properties"][field] = {"description": f"Any JSON ({field})."}
    attempt = {
        "type": "object",
        "properties": {"n": {"type": "integer"}, "started_at": _NUM, "finished_at": _NUM, "ok": {"type": "boolean"}},
    }
    result = {
        "type": "object",
        "required": ["id", "method", "name", "status", "attempts", "created_at", "run_at"],
        "properties": {
            "id": {"type": "string"},
            "method": {"type": "string", "enum": [m.value for m in Method]},
            "name": {"type": "string"},
            "status": {"type": "string", "enum": [s.value for s in Status]},
            "attempts": {"type": "integer", "minimum": 0},
            "created_at": _NUM,
            "run_at": _NUM,
            "started_at": _NUM_OR_NULL,
            "finished_at": _NUM_OR_NULL,
            "result": {"description": "The runner's output (SPEC 3.1), or OK/Timeout on submit answers."},
            "error": _STR_OR_NULL,
            "meta": {"type": ["object", "null"]},
            "history": {"type": "array", "items": attempt},
            "duplicate": {"type": "boolean"},
        },
    }
    ack = {
        "type": "object",
        "required": ["result", "id", "status", "run_at"],
        "properties": {
            "result": {"type": "string", "enum": ["OK"]},
            "id": {"type": "string"},
            "status": {"type": "string", "enum": [s.value for s in Status]},
            "run_at": _NUM,
        },
    }
    error = {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}, "field": _STR_OR_NULL, "result": {"type": "string"}},
    }
    return {
        **components,
        "JobIn": job_in,
        "Result": result,
        "Ack": ack,
        "Error": error,
        "Slot": {"anyOf": [_ref("Ack"), _ref("Result"), _ref("Error")]},
    }


def _errors(*codes: int) -> dict[str, Any]:
    words = {
        400: "Bad input",
        401: "Missing or wrong token",
        404: "Unknown",
        409: "Conflict",
        413: "Too large",
        415: "Not JSON",
        503: "Store unreachable or shutting down",
    }
    return {str(code): _json(_ref("Error"), words[code]) for code in codes}


def _id_param() -> dict[str, Any]:
    return {"name": "id", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


def document() -> dict[str, Any]:
    page = [_query("page", {"type": "integer", "minimum": 1}), _query("size", {"type": "integer", "minimum": 1})]
    listing = {"type": "object", "required": ["page", "size", "total"]}
    auth = _errors(401)
    paths: dict[str, Any] = {
        "/task_in_queue": {
            "post": {
                "summary": "Submit one job or a batch; stored before the answer",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "anyOf": [
                                    _ref("JobIn"),
                                    {"type": "array", "items": _ref("JobIn"), "minItems": 1, "maxItems": MAX_BATCH},
                                ]
                            }
                        }
                    },
                },
                "responses": {
                    "200": _json({"anyOf": [_ref("Result"), {"type": "array", "items": _ref("Slot")}]}, "Final"),
                    "202": _json(
                        {"anyOf": [_ref("Ack"), _ref("Result"), {"type": "array", "items": _ref("Slot")}]}, "Accepted"
                    ),
                    "207": _json({"type": "array", "items": _ref("Slot")}, "A batch with some bad jobs"),
                    **_errors(400, 413, 415, 503),
                    **auth,
                },
            }
        },
        "/task_resp/{id}": {
            "get": {
                "summary": "Long-poll a job's result",
                "parameters": [_id_param(), _query("timeout", {"type": "number", "minimum": 0, "maximum": 300})],
                "responses": {
                    "200": _json(_ref("Result"), "Final"),
                    "202": _json(_ref("Result"), "Not final yet"),
                    **_errors(400, 404),
                    **auth,
                },
            }
        },
        "/jobs/{id}": {
            "get": {
                "summary": "A job's current state",
                "parameters": [_id_param()],
                "responses": {
                    "200": _json(_ref("Result"), "Final"),
                    "202": _json(_ref("Result"), "Not final yet"),
                    **_errors(404),
                    **auth,
                },
            },
            "delete": {
                "summary": "Cancel a job that has not started",
                "parameters": [_id_param()],
                "responses": {"200": _json(_ref("Result"), "Cancelled"), **_errors(404, 409), **auth},
            },
        },
        "/jobs": {
            "get": {
                "summary": "A page of jobs, newest first",
                "parameters": [
                    _query("status", {"type": "string", "enum": [s.value for s in Status]}),
                    _query("method", {"type": "string", "enum": [m.value for m in Method]}),
                    _query("name", {"type": "string"}),
                    _query("type", {"type": "string"}),
                    *page,
                ],
                "responses": {"200": _json(listing, "A page"), **_errors(400), **auth},
            }
        },
        "/dead": {
            "get": {
                "summary": "Dead letters, newest day first",
                "parameters": page,
                "responses": {"200": _json(listing, "A page"), **_errors(400), **auth},
            }
        },
        "/dead/{id}": {
            "get": {
                "summary": "A dead letter",
                "parameters": [_id_param()],
                "responses": {"200": _json(_ref("Result"), "The dead job"), **_errors(404), **auth},
            },
            "delete": {
                "summary": "Delete a dead letter",
                "parameters": [_id_param()],
                "responses": {"200": _json({"type": "object"}, "Deleted"), **_errors(404), **auth},
            },
        },
        "/dead/{id}/retry": {
            "post": {
                "summary": "Run a dead job again with fresh attempts",
                "parameters": [_id_param()],
                "responses": {"202": _json(_ref("Ack"), "Queued again"), **_errors(404, 409, 503), **auth},
            }
        },
        "/health": {
            "get": {
                "summary": "Whether the store answers (no token needed)",
                "security": [],
                "responses": {"200": _json({"type": "object"}, "Healthy"), "503": _json({"type": "object"}, "Not")},
            }
        },
        "/sys_info": {
            "get": {
                "summary": "Workers, queues and counts",
                "responses": {
                    "200": _json({"type": "object", "required": ["version", "store", "workers", "counts"]}, "State"),
                    **auth,
                },
            }
        },
        "/openapi.json": {
            "get": {"summary": "This document", "responses": {"200": _json({"type": "object"}, "OpenAPI"), **auth}}
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "poulpe", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }

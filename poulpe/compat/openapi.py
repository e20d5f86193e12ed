"""The compatibility routes in /openapi.json: their request shapes and their own answer shapes."""

from __future__ import annotations

from typing import Any

from poulpe.validate import MAX_UNIX

_STR = {"type": "string"}
_INT = {"type": "integer"}
_NUMBERISH = {"type": ["number", "string", "null"]}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _unauthorized() -> dict[str, Any]:
    return {"401": _json({"$ref": "#/components/schemas/Error"}, "Missing or wrong bearer token")}


def _kingtask_refusal() -> dict[str, Any]:
    return {
        "403": _json(_STR, "kingtask's error answer: the message as a JSON string"),
        "503": _json(_STR, "Store unreachable or shutting down: nothing was accepted, retry"),
        **_unauthorized(),
    }


def _kingtask_body(specific: dict[str, Any], required: list[str]) -> dict[str, Any]:
    properties = {
        **specific,
        "uuid": {"type": ["string", "null"], "description": "The task's id; generated when absent."},
        "start_time": {
            "anyOf": [{"type": "number", "minimum": 0, "maximum": MAX_UNIX}, {"type": ["string", "null"]}],
            "description": "Unix seconds (a number or a string of one); 0 or absent: now.",
        },
        "time_interval": {
            "anyOf": [{"type": ["string", "null"]}, {"type": "array", "items": {"type": ["number", "string"]}}],
            "description": 'Seconds separated by spaces ("60 600 3600"): one retry after each. Absent: no retry.',
        },
        "max_run_time": {**_NUMBERISH, "description": "Limit of one attempt, seconds (default --job_timeout)."},
        "index": {"description": "Accepted and ignored, as kingtask's clients send it."},
        "task_type": {"description": "Accepted and ignored, as kingtask's clients send it."},
    }
    schema = {"type": "object", "required": required, "properties": properties, "additionalProperties": False}
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _kingtask_submit(operation: str, summary: str, specific: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "post": {
            "operationId": operation,
            "summary": summary,
            "tags": ["kingtask"],
            "requestBody": _kingtask_body(specific, required),
            "responses": {"200": _json(_STR, "The task's uuid"), **_kingtask_refusal()},
        }
    }


def _kingtask_count(operation: str, summary: str, *path_params: str) -> dict[str, Any]:
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
        for name in path_params
    ]
    return {
        "get": {
            "operationId": operation,
            "summary": summary,
            "tags": ["kingtask"],
            "parameters": parameters,
            "responses": {"200": _json({"type": "integer", "minimum": 0}, "The count"), **_kingtask_refusal()},
        }
    }


def kingtask_paths() -> dict[str, Any]:
    script = {
        "bin_name": {"type": "string", "description": "A program's file name inside --exec_dir."},
        "args": {
            "anyOf": [{"type": ["string", "null"]}, {"type": "array", "items": _STR}],
            "description": "Arguments separated by spaces (no quoting, as kingtask split them).",
        },
    }
    rpc = {
        "method": {"type": "string", "description": "GET, POST, PUT, PATCH or DELETE (any letter case)."},
        "url": {"type": "string", "description": "An http or https URL."},
        "args": {
            "type": ["string", "null"],
            "description": "JSON text: the body of a POST/PUT/PATCH, the query (an object) of a GET/DELETE.",
        },
    }
    script_summary = "kingtask: run a program in --exec_dir (an EXEC job)"
    result = _json(
        {
            "type": "object",
            "required": ["is_result_exist", "is_success", "message"],
            "properties": {
                "is_result_exist": {"enum": [0, 1]},
                "is_success": {"enum": [0, 1]},
                "message": _STR,
            },
        },
        "is_result_exist 0 while the task is not final; message: stdout or response body, or the error",
    )
    return {
        "/api/v1/task": _kingtask_submit(
            "kingtaskTask", f"{script_summary}; the path kingtask's README posts to", script, ["bin_name"]
        ),
        "/api/v1/task/script": _kingtask_submit("kingtaskScript", script_summary, script, ["bin_name"]),
        "/api/v1/task/rpc": _kingtask_submit(
            "kingtaskRpc", "kingtask: call a URL (an HTTP job)", rpc, ["method", "url"]
        ),
        "/api/v1/task/result/{id}": {
            "get": {
                "operationId": "kingtaskResult",
                "summary": "kingtask: a task's result",
                "tags": ["kingtask"],
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": result, **_kingtask_refusal()},
            }
        },
        "/api/v1/task/count/undo": _kingtask_count("kingtaskUndo", "kingtask: how many tasks are not final yet"),
        "/api/v1/task/result/success/{date}": _kingtask_count(
            "kingtaskSuccesses", "kingtask: tasks that succeeded on a UTC day (YYYY-MM-DD)", "date"
        ),
        "/api/v1/task/result/failure/{date}": _kingtask_count(
            "kingtaskFailures", "kingtask: tasks that ended dead on a UTC day (YYYY-MM-DD)", "date"
        ),
    }


def paths() -> dict[str, Any]:
    return {**kingtask_paths()}

"""The compatibility routes (kingtask, easyTask) in /openapi.json: their request shapes and their own answers."""

from __future__ import annotations

from typing import Any

from poulpe.api_workers import WORKER_PATTERN
from poulpe.compat.openapi_parts import NUMBERISH, STR, json_answer, unauthorized
from poulpe.openapi_workers import worker_paths
from poulpe.validate import MAX_UNIX, TYPE_PATTERN


def _kingtask_refusal() -> dict[str, Any]:
    return {
        "403": json_answer(STR, "kingtask's error answer: the message as a JSON string"),
        "503": json_answer(STR, "Store unreachable or shutting down: nothing was accepted, retry"),
        **unauthorized(),
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
        "max_run_time": {**NUMBERISH, "description": "Limit of one attempt, seconds (default --job_timeout)."},
        "index": {"description": "Accepted and ignored, as kingtask's clients send it."},
    }
    schema = {
        "type": "object",
        "required": required,
        "properties": properties,
        "description": "Fields the route does not use are ignored, as kingtask ignored them. A body that opens with "
        "`{` is read as JSON whatever its Content-Type (curl's -d labels it a form).",
    }
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _kingtask_submit(operation: str, summary: str, specific: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "post": {
            "operationId": operation,
            "summary": summary,
            "tags": ["kingtask"],
            "requestBody": _kingtask_body(specific, required),
            "responses": {"200": json_answer(STR, "The task's uuid"), **_kingtask_refusal()},
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
            "responses": {"200": json_answer({"type": "integer", "minimum": 0}, "The count"), **_kingtask_refusal()},
        }
    }


def kingtask_paths() -> dict[str, Any]:
    script = {
        "bin_name": {"type": "string", "description": "A program's file name inside --exec_dir."},
        "args": {
            "anyOf": [{"type": ["string", "null"]}, {"type": "array", "items": STR}],
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
    result = json_answer(
        {
            "type": "object",
            "required": ["is_result_exist", "is_success", "message"],
            "properties": {
                "is_result_exist": {"enum": [0, 1]},
                "is_success": {"enum": [0, 1]},
                "message": STR,
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


# --- easyTask -------------------------------------------------------------------------------------------------------
def _easytask_answers(data: dict[str, Any], *codes: int) -> dict[str, Any]:
    refusal = {
        "type": "object",
        "required": ["code", "errmsg"],
        "properties": {"code": {"const": -1}, "errmsg": STR},
    }
    words = {
        400: "Bad input (errmsg names the field)",
        404: "No such task",
        409: "The task is not held by this worker",
        413: "Body too large",
        503: "Store unreachable or shutting down",
    }
    ok = {"type": "object", "required": ["code", "data"], "properties": {"code": {"const": 0}, "data": data}}
    return {
        "200": json_answer(ok, "Done"),
        **{str(code): json_answer(refusal, words[code]) for code in codes},
        **unauthorized(),
    }


def _query_param(name: str, schema: dict[str, Any], description: str, *, required: bool = False) -> dict[str, Any]:
    """Given empty (`?pagesize=`), an optional number is as if absent."""
    param = {"name": name, "in": "query", "required": required, "schema": schema, "description": description}
    return param if required or schema.get("type") != "integer" else {**param, "allowEmptyValue": True}


def _easytask_get(
    operation: str, summary: str, parameters: list[dict[str, Any]], data: dict[str, Any]
) -> dict[str, Any]:
    return {
        "get": {
            "operationId": operation,
            "summary": summary,
            "tags": ["easyTask"],
            "parameters": parameters,
            "responses": _easytask_answers(data, 400, 503),
        }
    }


def _easytask_text_get(operation: str, summary: str, parameters: list[dict[str, Any]]) -> dict[str, Any]:
    """sayhi, beat and newtype answer bare text, as easyTask did: `OK`, or the error sentence."""

    def text(schema: dict[str, Any], description: str) -> dict[str, Any]:
        return {"description": description, "content": {"text/plain": {"schema": schema}}}

    return {
        "get": {
            "operationId": operation,
            "summary": summary,
            "tags": ["easyTask"],
            "parameters": parameters,
            "responses": {
                "200": text({"const": "OK"}, "Done: the bare text OK"),
                "400": text(STR, "Bad input: the error sentence (naming the parameter)"),
                **unauthorized(),
            },
        }
    }


def easytask_paths() -> dict[str, Any]:
    kind = {"type": "string", "pattern": TYPE_PATTERN}
    worker = {"type": "string", "pattern": WORKER_PATTERN}
    record = {
        "type": "object",
        "required": [
            "id",
            "tid",
            "rid",
            "task_type",
            "task_info",
            "stat",
            "add_time",
            "update_time",
            "client",
            "remark",
        ],
        "properties": {
            "id": {"type": "integer", "description": "The record id: poulpe's acceptance number."},
            "tid": {"type": "string", "description": "poulpe's job id."},
            "rid": STR,
            "task_type": STR,
            "task_info": {},
            "stat": {"enum": [1, 2, 3, -1], "description": "1 new, 2 processing, 3 done, -1 error."},
            "add_time": STR,
            "update_time": STR,
            "rapper": STR,
            "client": {"type": "string", "description": "The worker holding or last running the task."},
            "remark": STR,
        },
    }
    put_body = {
        "type": "object",
        "minProperties": 1,
        "description": "Fields the route does not use are ignored. A body that opens with `{` is read as JSON "
        "whatever its Content-Type (curl's -d labels it a form).",
        "properties": {
            "rid": {"type": ["string", "integer", "null"], "description": "Your record id, kept in meta.rid."},
            "tid": {
                "anyOf": [{"type": "null"}, {"type": "string", "pattern": "^(?:[A-Za-z0-9._:-]{1,128})?$"}],
                "description": "The job id to use (a known one is not stored twice).",
            },
            "task_type": {"description": "Not used: the type is the one in the path, as easyTask took it."},
            "task_info": {"description": "Any JSON: the QUEUE job's params, handed to the worker."},
            "callback": {"type": ["string", "null"], "description": "An http(s) URL the final result is POSTed to."},
        },
    }
    update_body = {
        "type": "object",
        "required": ["stat"],
        "description": "Fields the route does not use are ignored: easyTask's Go worker posts back the whole record.",
        "properties": {
            "id": {
                "anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": "^[0-9]{1,18}$"}],
                "description": "The record id (or give tid).",
            },
            "tid": {"anyOf": [{"type": "null"}, {"type": "string"}], "description": "poulpe's job id."},
            "stat": {"enum": [2, 3, -1, "2", "3", "-1"], "description": "3 done, -1 error (retried by policy)."},
            "remark": {"type": ["string", "null"]},
            "name": {"anyOf": [{"type": "null"}, worker], "description": "The worker; default: the lease holder."},
        },
    }
    paged = [
        _query_param("type", kind, "The task type.", required=True),
        _query_param("name", worker, "A worker's name: fetch (lease) tasks for it instead of listing."),
        _query_param(
            "num",
            {"type": "integer", "minimum": 1, "maximum": 1000},
            "How many to fetch: given, with or without name, the request is a fetch (default 1).",
        ),
        _query_param("pageno", {"type": "integer", "minimum": 1, "maximum": 1_000_000}, "Page (default 1)."),
        _query_param("pagesize", {"type": "integer", "minimum": 1, "maximum": 1000}, "Page size (default 10)."),
    ]
    type_and_name = [
        _query_param("type", kind, "The task type.", required=True),
        _query_param("name", worker, "The worker's name.", required=True),
    ]
    return {
        "/api/putask/{type}": {
            "put": {
                "operationId": "easytaskPut",
                "summary": "easyTask: add a task (a QUEUE job of this type); data is its record id",
                "tags": ["easyTask"],
                "parameters": [{"name": "type", "in": "path", "required": True, "schema": kind}],
                "requestBody": {"required": True, "content": {"application/json": {"schema": put_body}}},
                "responses": _easytask_answers({"type": "integer"}, 400, 413, 503),
            }
        },
        "/querytask": _easytask_get(
            "easytaskQuery",
            "easyTask: a page of task records, or with `num` or `name` a worker's fetch (the tasks are leased to it)",
            paged,
            {"type": "array", "items": record},
        ),
        "/updatetask": {
            "post": {
                "operationId": "easytaskUpdate",
                "summary": "easyTask: report a fetched task done (stat 3) or failed (stat -1)",
                "tags": ["easyTask"],
                "requestBody": {"required": True, "content": {"application/json": {"schema": update_body}}},
                "responses": _easytask_answers({"type": "null"}, 400, 404, 409, 413, 503),
            }
        },
        "/sayhi": _easytask_text_get(
            "easytaskHello", "easyTask: a worker says hi (it then beats every 5 s)", type_and_name
        ),
        "/beat": _easytask_text_get("easytaskBeat", "easyTask: a worker's heartbeat", type_and_name),
        "/newtype": _easytask_text_get(
            "easytaskNewType",
            "easyTask: declare a task type (nothing to create in poulpe: the name is checked)",
            [_query_param("name", kind, "The task type.", required=True)],
        ),
    }


def paths() -> dict[str, Any]:
    return {**kingtask_paths(), **worker_paths(), **easytask_paths()}

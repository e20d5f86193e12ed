"""The OpenAPI description of flow control (SPEC 10.1): keys, the deployment-wide pause, run now."""

from __future__ import annotations

from typing import Any

from poulpe.keys import KEY_PATTERN, MAX_LIMIT

_INT = {"type": "integer", "minimum": 0}
_NUM = {"type": "number"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    words = {
        400: "Bad input: the field is named",
        401: "Missing or wrong bearer token",
        404: "No such job (or it expired); for a key: a path no key can have",
        409: "Conflict with the job's state",
        503: "Store unreachable: nothing was changed, retry",
    }
    return {str(code): _json(_ref("Error"), words[code]) for code in (*codes, 401, 503)}


def _key_param() -> dict[str, Any]:
    return {
        "name": "key",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": KEY_PATTERN},
        "description": "1-128 of A-Z a-z 0-9 . _ : @ / - (a `/` is written as is in the path).",
        "example": "shop-42",
    }


def schemas() -> dict[str, Any]:
    parallelism = {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_LIMIT}
    rate = {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": MAX_LIMIT}
    period = {"type": "number", "exclusiveMinimum": 0, "maximum": 86400}
    key_state = {
        "type": "object",
        "required": ["key", "parallelism", "rate", "period", "paused", "waiting", "running", "started_in_period"],
        "properties": {
            "key": {"type": "string"},
            "parallelism": {**parallelism, "description": "Attempts running at once at most (null: no limit)."},
            "rate": {**rate, "description": "Attempt starts per `period` at most (null: no limit)."},
            "period": {**period, "description": "Seconds of `rate`."},
            "paused": {"type": "boolean"},
            "own": {"type": "boolean", "description": "The key has limits of its own (else the --key_* defaults)."},
            "waiting": {**_INT, "description": "Due jobs waiting for a worker."},
            "running": {**_INT, "description": "Attempts running now."},
            "started_in_period": {**_INT, "description": "Attempts started in the last `period` seconds."},
        },
    }
    update = {
        "type": "object",
        "additionalProperties": False,
        "required": [],
        "properties": {
            "parallelism": {**parallelism, "description": "null removes the key's own limit (the default applies)."},
            "rate": {**rate, "description": "null removes the key's own limit (the default applies)."},
            "period": {**period, "description": "Seconds of `rate` (default 1)."},
            "paused": {"type": "boolean", "description": "true: none of the key's jobs starts until false."},
        },
    }
    page = {
        "type": "object",
        "required": ["page", "size", "total", "keys"],
        "properties": {
            "page": {"type": "integer", "minimum": 1},
            "size": {"type": "integer", "minimum": 1},
            "total": _INT,
            "keys": {"type": "array", "items": _ref("KeyState")},
        },
    }
    paused = {"type": "object", "required": ["paused"], "properties": {"paused": {"type": "boolean"}}}
    return {"KeyState": key_state, "KeyUpdate": update, "KeyPage": page, "Paused": paused}


def paths() -> dict[str, Any]:
    paging = [
        {"name": "page", "in": "query", "required": False, "allowEmptyValue": True,
         "schema": {"type": "integer", "minimum": 1, "maximum": 1_000_000}, "description": "Page, from 1."},
        {"name": "size", "in": "query", "required": False, "allowEmptyValue": True,
         "schema": {"type": "integer", "minimum": 1, "maximum": 1000}, "description": "Page size (default 50)."},
    ]  # fmt: skip
    job_id = {"name": "id", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
    return {
        "/keys": {
            "get": {
                "operationId": "listKeys",
                "summary": "Keys with unfinished jobs or limits of their own, most waiting first",
                "parameters": paging,
                "responses": {"200": _json(_ref("KeyPage"), "A page of keys"), **_errors(400)},
            }
        },
        "/keys/{key}": {
            "get": {
                "operationId": "getKey",
                "summary": "A key's limits in force, pause, and jobs waiting and running",
                "parameters": [_key_param()],
                "responses": {"200": _json(_ref("KeyState"), "The key"), **_errors(400, 404)},
            },
            "put": {
                "operationId": "putKey",
                "summary": "Set a key's limits or pause (partial: omitted fields keep their value)",
                "parameters": [_key_param()],
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("KeyUpdate")}}},
                "responses": {"200": _json(_ref("KeyState"), "The key now"), **_errors(400, 404)},
            },
            "delete": {
                "operationId": "deleteKey",
                "summary": "Remove a key's own limits and pause (its jobs stay)",
                "parameters": [_key_param()],
                "responses": {"200": _json(_ref("KeyState"), "The key now"), **_errors(400, 404)},
            },
        },
        "/pause": {
            "post": {
                "operationId": "pauseAll",
                "summary": "No job starts anywhere until /resume (intake goes on; survives restarts)",
                "responses": {"200": _json(_ref("Paused"), "Paused"), **_errors()},
            }
        },
        "/resume": {
            "post": {
                "operationId": "resumeAll",
                "summary": "Jobs start again after /pause",
                "responses": {"200": _json(_ref("Paused"), "Resumed"), **_errors()},
            }
        },
        "/jobs/{id}/run": {
            "post": {
                "operationId": "runJobNow",
                "summary": "A scheduled or retrying job becomes due now (its key's limits still apply)",
                "parameters": [job_id],
                "responses": {"200": _json(_ref("Result"), "The job, due now"), **_errors(404, 409)},
            }
        },
    }

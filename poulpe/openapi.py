"""GET /openapi.json: every route poulpe serves, described exactly enough for a fuzzer to hold poulpe to it.

Request schemas say what poulpe refuses by shape alone (a wrong type, an unknown field, a number out of range):
such a request gets 400 naming the field. Rules between fields or about the running poulpe (a URL for the HTTP
methods, not both `delay` and `at`, `cc` within `--workers`, EXEC only with `--exec_dir`, `--allow_hosts`) are in
the descriptions: they answer 400 too, but a schema cannot carry them. tests/e2e/test_schemathesis.py checks the
document against the running server; it also checks that the job schema lists the validator's fields exactly.
"""

from __future__ import annotations

from typing import Any

from poulpe import __version__
from poulpe.compat.openapi import paths as compat_paths
from poulpe.job import Method, Status
from poulpe.validate import ID_PATTERN, MAX_BATCH, MAX_META, MAX_PARAMS, MAX_SECONDS, MAX_UNIX

_NUM = {"type": "number"}
_INT = {"type": "integer"}
_STR = {"type": "string"}
_BOOL = {"type": "boolean"}
_NUM_OR_NULL = {"type": ["number", "null"]}
_STR_OR_NULL = {"type": ["string", "null"]}
_STATUSES = [s.value for s in Status]
_METHODS = [m.value for m in Method]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _nullable(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}], "description": description}


def _any_case(words: list[str]) -> str:
    """A pattern matching these words in any ASCII letter case: `get`, `Get`, `GET`."""
    spelled = ["".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in word) for word in words]
    return "^(?:" + "|".join(spelled) + ")$"


def _object(properties: dict[str, Any], required: list[str], **extra: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties, **extra}


def _job_in() -> dict[str, Any]:
    seconds = {"type": "number", "minimum": 0, "maximum": MAX_SECONDS}
    retry = _object(
        {
            "max": _nullable({"type": "integer", "minimum": 0, "maximum": 100}, "Retries after the first attempt."),
            "interval": _nullable(seconds, "Seconds between attempts."),
            "backoff": _nullable({"type": "string", "enum": ["fixed", "exponential"]}, "Exponential doubles."),
            "max_interval": _nullable(seconds, "Ceiling of the exponential backoff."),
            "intervals": _nullable(
                {"type": "array", "items": seconds, "minItems": 1, "maxItems": 100},
                "One retry after each listed interval (kingtask's time_interval); not with max/interval/backoff.",
            ),
        },
        [],
        additionalProperties=False,
    )
    properties: dict[str, Any] = {
        "id": _nullable(
            {"type": "string", "pattern": ID_PATTERN},
            "Unique id, generated (UUID4) when absent. A known id is not stored twice: the answer is the existing "
            "job with `duplicate: true`.",
        ),
        "method": {
            "type": "string",
            "pattern": _any_case(_METHODS),
            "description": f"What the job does, in any letter case: {', '.join(_METHODS)}.",
        },
        "name": {
            "type": "string",
            "minLength": 1,
            "maxLength": 4096,
            "description": "HTTP methods: an http or https URL with a host (and a host in --allow_hosts when set). "
            "EXEC: a program's file name inside --exec_dir. MAIL_TO: the recipient. QUEUE: the task type "
            "(1-64 letters and digits of any script, . _ -).",
        },
        "params": {
            "description": f"Any JSON, at most {MAX_PARAMS // 1024} KiB encoded. GET/DELETE: a query string or an "
            "object of scalars (or lists of them). POST/PUT/PATCH: the JSON body (a string must hold JSON). EXEC: "
            "arguments as a string (split like a shell) or an array of strings. QUEUE: handed to the worker as is."
        },
        "delay": _nullable(seconds, "Run this many seconds after acceptance; not with `at`."),
        "at": {
            "anyOf": [
                {"type": "number", "minimum": 0, "maximum": MAX_UNIX},
                {"type": "string", "maxLength": 64},
                {"type": "null"},
            ],
            "description": "Run at this unix time, or ISO-8601 time with a UTC offset; a past time means now. "
            "Not with `delay`.",
        },
        "cc": _nullable(
            {"type": "string", "maxLength": 4096},
            "Worker numbers (0..--workers - 1) separated by spaces or commas: only these may run the job.",
        ),
        "wait": _nullable(
            {"type": "number", "minimum": 0, "maximum": 300}, "Hold the answer up to this many seconds for the result."
        ),
        "timeout": _nullable(
            {"type": "number", "exclusiveMinimum": 0, "maximum": 86400}, "Limit of one attempt, seconds."
        ),
        "retry": _nullable(retry, "Retry policy of this job, instead of --max_retry and --retry_interval."),
        "headers": _nullable(
            {"type": "object", "additionalProperties": _STR, "maxProperties": 64},
            "Extra request headers of an HTTP job. Names are HTTP tokens, not Host, Content-Length, "
            "Transfer-Encoding, Connection or Poulpe-*; values at most 8 KiB without line breaks.",
        ),
        "callback": _nullable(
            {"type": "string", "maxLength": 4096}, "An http or https URL the final result is POSTed to."
        ),
        "meta": _nullable({"type": "object"}, f"Returned as is; at most {MAX_META // 1024} KiB."),
    }
    return _object(properties, ["method", "name"], additionalProperties=False)


def _schemas() -> dict[str, Any]:
    attempt = _object(
        {
            "n": _INT,
            "started_at": _NUM,
            "worker": {"type": ["integer", "null"]},
            "node": _STR_OR_NULL,
            "finished_at": _NUM_OR_NULL,
            "ok": {"type": ["boolean", "null"]},
            "error": _STR_OR_NULL,
        },
        ["n", "started_at"],
    )
    result = _object(
        {
            "id": _STR,
            "method": {"type": "string", "enum": _METHODS},
            "name": _STR,
            "status": {"type": "string", "enum": _STATUSES},
            "attempts": {"type": "integer", "minimum": 0},
            "created_at": _NUM,
            "run_at": _NUM,
            "started_at": _NUM_OR_NULL,
            "finished_at": _NUM_OR_NULL,
            "result": {"description": "The runner's output (SPEC 3.1); `Timeout` when a `wait` ran out."},
            "output": {"description": "With `result: Timeout`: the runner's output so far."},
            "error": {**_STR_OR_NULL, "description": "Why the last attempt failed."},
            "meta": {"type": ["object", "null"]},
            "history": {"type": "array", "items": _ref("Attempt"), "maxItems": 20},
            "duplicate": {**_BOOL, "description": "The id was known: this is the existing job, nothing was added."},
            # QUEUE jobs and callbacks (poulpe/external.py, poulpe/callbacks.py)
            "worker": {**_STR, "description": "QUEUE: the external worker holding the running attempt."},
            "lease_until": {**_NUM_OR_NULL, "description": "QUEUE: when that worker's lease ends."},
            "remark": {**_STR, "description": "QUEUE: the remark its worker reported with the result."},
            "callback_delivery": _object(
                {
                    "attempts": _INT,
                    "status_code": {"type": ["integer", "null"]},
                    "error": _STR_OR_NULL,
                    "delivered_at": _NUM_OR_NULL,
                },
                ["attempts", "status_code", "error", "delivered_at"],
                description="With a callback: how its POST went (it never changes the job's status).",
            ),
        },
        [
            "id",
            "method",
            "name",
            "status",
            "attempts",
            "created_at",
            "run_at",
            "started_at",
            "finished_at",
            "result",
            "error",
            "meta",
        ],
    )
    ack = _object(
        {
            "result": {"type": "string", "enum": ["OK"]},
            "id": _STR,
            "status": {"type": "string", "enum": _STATUSES},
            "run_at": _NUM,
        },
        ["result", "id", "status", "run_at"],
    )
    error = _object(
        {
            "result": {"type": "string", "enum": ["Fail"]},
            "error": {**_STR, "description": "A sentence saying what is wrong."},
            "field": {**_STR_OR_NULL, "description": "The field at fault (`retry.max`), or null."},
            "stored": {
                "type": "string",
                "enum": ["unknown"],
                "description": "503 only: the store went away after receiving the job; retry with `id` / `ids`.",
            },
            "id": {**_STR, "description": "With `stored`: the job's id (generated ones too)."},
            "ids": {
                "type": "array",
                "items": _STR_OR_NULL,
                "description": "With `stored`, for a batch: one id per slot in order (null: the slot was not valid).",
            },
        },
        ["result", "error", "field"],
    )
    dead_job = {
        "allOf": [
            _ref("Result"),
            _object(
                {
                    "job": _object(
                        {"params": {}, "cc": {"type": "array", "items": _INT}, "retry": {"type": ["object", "null"]}},
                        ["params", "cc", "retry"],
                    )
                },
                ["job"],
            ),
        ]
    }
    page = {"page": {"type": "integer", "minimum": 1}, "size": {"type": "integer", "minimum": 1}, "total": _INT}
    # present when --kafka_servers is set (docs/kafka.md)
    link = _object(
        {"state": {"type": "string", "enum": ["starting", "connected", "down", "stopped"]}, "error": _STR}, ["state"]
    )
    kafka = _object(
        {"consumer": link, "producer": link, "topic": _STR, "resp_topic": _STR, "group": _STR, "pending": _INT,
         "max_pending": _INT, "paused": _BOOL, "taken": _INT, "malformed": _INT, "results_sent": _INT},
        ["consumer", "producer", "topic", "resp_topic", "group", "pending", "max_pending", "paused"],
    )  # fmt: skip
    sys_info = _object(
        {
            "kafka": _ref("Kafka"),
            "version": _STR,
            "uptime_s": _NUM,
            "store": {"type": "string", "enum": ["sqlite", "redis"]},
            "node": _STR,
            "workers": {
                "type": "array",
                "items": _object({"id": _INT, "running": _STR_OR_NULL, "queue": _INT}, ["id", "running", "queue"]),
            },
            "running": {"type": "array", "items": _STR, "maxItems": 1000},
            "delayed": {"type": "array", "items": _STR, "maxItems": 1000},
            "failed": {"type": "array", "items": _STR, "maxItems": 1000},
            "truncated": _BOOL,
            "counts": _object({s: _INT for s in _STATUSES}, _STATUSES),
            "today": _object({"succeeded": _INT, "failed": _INT}, ["succeeded", "failed"]),
        },
        ["version", "uptime_s", "store", "node", "workers", "running", "delayed", "failed", "counts", "today"],
    )
    return {
        "JobIn": _job_in(),
        "Attempt": attempt,
        "Result": result,
        "Ack": ack,
        "Error": error,
        "Slot": {"anyOf": [_ref("Ack"), _ref("Result"), _ref("Error")]},
        "DeadJob": dead_job,
        "JobPage": _object({**page, "jobs": {"type": "array", "items": _ref("Result")}}, [*page, "jobs"]),
        "DeadPage": _object(
            {
                **page,
                "dead": {
                    "type": "array",
                    "items": _object(
                        {"id": _STR, "day": _STR, "file": {**_STR_OR_NULL, "description": "null: the letter is owed"}},
                        ["id", "day", "file"],
                    ),
                },
            },
            [*page, "dead"],
        ),
        "SysInfo": sys_info,
        "Kafka": kafka,
    }


_WORDS = {
    400: "Bad input: the field is named",
    401: "Missing or wrong bearer token",
    404: "No such job (or it expired), or no such dead letter",
    409: "Conflict with the job's state",
    413: "Body larger than --max_body",
    415: "Body not sent as application/json",
    503: "Store unreachable or shutting down: nothing was accepted, retry (with `stored: unknown`: retry with the ids)",
}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): _json(_ref("Error"), _WORDS[code]) for code in (*codes, 401)}


def _id_param() -> dict[str, Any]:
    return {
        "name": "id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "minLength": 1},
        "example": "order-42-mail",
    }


_EXAMPLES = {
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


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    """An optional query parameter; given empty (`?page=`) it is as if absent, as in SPEC's `/jobs?status=&...`."""
    return {
        "name": name,
        "in": "query",
        "required": False,
        "allowEmptyValue": True,
        "schema": schema,
        "description": description,
    }


def _paging() -> list[dict[str, Any]]:
    return [
        _query("page", {"type": "integer", "minimum": 1, "maximum": 1_000_000}, "Page number, from 1 (default 1)."),
        _query("size", {"type": "integer", "minimum": 1, "maximum": 1000}, "Page size (default 50)."),
    ]


def _paths() -> dict[str, Any]:
    submit_body = {
        "anyOf": [
            _ref("JobIn"),
            {"type": "array", "items": _ref("JobIn"), "minItems": 1, "maxItems": MAX_BATCH},
        ]
    }
    slots = {"type": "array", "items": _ref("Slot")}
    return {
        "/task_in_queue": {
            "post": {
                "operationId": "submit",
                "summary": "Submit one job or a batch; the answer comes once they are stored",
                "requestBody": {
                    "required": True,
                    "description": f"One job, or a batch of 1 to {MAX_BATCH}: a bad job in a batch fails only its "
                    "own slot of the answer (207).",
                    "content": {"application/json": {"schema": submit_body, "examples": _EXAMPLES}},
                },
                "responses": {
                    "200": _json(_ref("Result"), "Final within `wait`, or a known id (`duplicate: true`)"),
                    "202": _json(
                        {"anyOf": [_ref("Ack"), _ref("Result"), slots]},
                        "Accepted (the acknowledgement, or the state with `result: Timeout` after `wait`); for a "
                        "batch, one slot per job",
                    ),
                    "207": _json(slots, "A batch where some slots hold an error; the other jobs are stored"),
                    **_errors(400, 413, 415, 503),
                },
            }
        },
        "/task_resp/{id}": {
            "get": {
                "operationId": "longPoll",
                "summary": "A job's result, as soon as it is final or after `timeout` seconds",
                "parameters": [
                    _id_param(),
                    _query(
                        "timeout",
                        {"type": "number", "minimum": 0, "maximum": 300},
                        "Seconds to wait for the job to be final (default 30).",
                    ),
                ],
                "responses": {
                    "200": _json(_ref("Result"), "Final"),
                    "202": _json(_ref("Result"), "Not final when `timeout` passed"),
                    **_errors(400, 404),
                },
            }
        },
        "/jobs": {
            "get": {
                "operationId": "listJobs",
                "summary": "A page of jobs, newest first",
                "parameters": [
                    _query(
                        "status",
                        {"type": "string", "pattern": _any_case(_STATUSES)},
                        "Only jobs in this status (any letter case).",
                    ),
                    _query(
                        "method",
                        {"type": "string", "pattern": _any_case(_METHODS)},
                        "Only jobs of this method (any letter case).",
                    ),
                    _query("name", _STR, "Only jobs with this exact name."),
                    _query("type", _STR, "Only QUEUE jobs of this task type; goes with method QUEUE or none."),
                    *_paging(),
                ],
                "responses": {"200": _json(_ref("JobPage"), "A page"), **_errors(400)},
            }
        },
        "/jobs/{id}": {
            "get": {
                "operationId": "getJob",
                "summary": "A job's state now",
                "parameters": [_id_param()],
                "responses": {
                    "200": _json(_ref("Result"), "Final"),
                    "202": _json(_ref("Result"), "Not final yet"),
                    **_errors(404),
                },
            },
            "delete": {
                "operationId": "cancelJob",
                "summary": "Cancel a job that has not started",
                "parameters": [_id_param()],
                "responses": {
                    "200": _json(_ref("Result"), "Cancelled"),
                    **_errors(404, 409),
                },
            },
        },
        "/dead": {
            "get": {
                "operationId": "listDead",
                "summary": "Dead jobs: those whose letter is owed first, then the letters, newest day first",
                "parameters": _paging(),
                "responses": {"200": _json(_ref("DeadPage"), "A page"), **_errors(400)},
            }
        },
        "/dead/{id}": {
            "get": {
                "operationId": "getDead",
                "summary": "A dead job (from the store, or its letter once the store forgot it): history, last result",
                "parameters": [_id_param()],
                "responses": {"200": _json(_ref("DeadJob"), "The dead job"), **_errors(404)},
            },
            "delete": {
                "operationId": "deleteDead",
                "summary": "Forget a dead job: from the store, and its letter (now, or once the directory lets it)",
                "parameters": [_id_param()],
                "responses": {
                    "200": _json(
                        _object(
                            {"result": {"type": "string", "enum": ["OK"]}, "id": _STR, "deleted": {"const": True}},
                            ["result", "id", "deleted"],
                        ),
                        "Deleted",
                    ),
                    **_errors(404, 503),
                },
            },
        },
        "/dead/{id}/retry": {
            "post": {
                "operationId": "retryDead",
                "summary": "Run a dead job again with fresh attempts (its letter goes once the job is stored)",
                "parameters": [_id_param()],
                "responses": {"202": _json(_ref("Ack"), "Queued again"), **_errors(404, 409, 503)},
            }
        },
        "/health": {
            "get": {
                "operationId": "health",
                "summary": "Whether the store answers and takes writes; no token needed",
                "security": [],
                "responses": {
                    "200": _json(
                        _object({"ok": {"const": True}, "detail": _object({"kafka": _ref("Kafka")}, [])}, ["ok"]),
                        "Healthy (with --kafka_servers, the Kafka state as detail: poulpe serves HTTP with Kafka down)",
                    ),
                    "503": _json(
                        _object(
                            {"ok": {"const": False}, "draining": _BOOL, "writable": {"const": False}, "error": _STR},
                            ["ok"],
                        ),
                        "Store unreachable, store cannot take writes (`writable: false`, a full disk), or draining",
                    ),
                },
            }
        },
        "/sys_info": {
            "get": {
                "operationId": "sysInfo",
                "summary": "Workers, queues and counts; never a secret",
                "responses": {"200": _json(_ref("SysInfo"), "State"), **_errors()},
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "responses": {
                    "200": _json({"type": "object", "required": ["openapi", "paths"]}, "OpenAPI"),
                    **_errors(),
                },
            }
        },
        **_operator_paths(),
    }


def _operator_paths() -> dict[str, Any]:
    """/metrics, /cron and the dashboard page with its script and style (poulpe/ops_api.py)."""
    cron_line = _object(
        {
            "line": _INT,
            "expr": _STR,
            "name": _STR,
            "method": {"type": "string", "enum": _METHODS},
            "id_prefix": _STR,
            "next": {"type": "array", "items": _NUM, "description": "The next fire times, unix seconds."},
        },
        ["line", "expr", "name", "method", "id_prefix", "next"],
    )
    cron = _object(
        {"file": _STR_OR_NULL, "timezone": _STR_OR_NULL, "lines": {"type": "array", "items": cron_line}},
        ["file", "timezone", "lines"],
    )

    def page(operation: str, media: str, summary: str) -> dict[str, Any]:
        return {
            "get": {
                "operationId": operation,
                "summary": summary,
                "security": [],
                "responses": {"200": {"description": summary, "content": {media: {"schema": _STR}}}},
            }
        }

    return {
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus text format: jobs by method and status, workers, attempt and store latency",
                "responses": {
                    "200": {"description": "Metrics", "content": {"text/plain": {"schema": _STR}}},
                    **_errors(),
                },
            }
        },
        "/cron": {
            "get": {
                "operationId": "cronLines",
                "summary": "The cron file's job lines and their next fire times (empty without --cron)",
                "responses": {"200": _json(cron, "Cron lines"), **_errors()},
            }
        },
        "/": page("dashboard", "text/html", "The dashboard page; no token needed to load it (its data routes need it)"),
        "/dashboard.js": page("dashboardScript", "text/javascript", "The dashboard's script"),
        "/dashboard.css": page("dashboardStyle", "text/css", "The dashboard's style"),
    }


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "poulpe",
            "version": __version__,
            "description": "A job manager: HTTP calls, programs and mails, now or later, retried and never lost. "
            "With --token, every route but /health needs `Authorization: Bearer <token>`. Every error answer is "
            '`{"result": "Fail", "error": <sentence>, "field": <field or null>}`. The WebSocket intake `/ws_task` '
            "takes the same job JSON (docs/api.md); it is not an OpenAPI operation.",
        },
        "paths": {**_paths(), **compat_paths()},  # compat: kingtask, easyTask, external workers
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }

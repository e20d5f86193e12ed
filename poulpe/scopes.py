"""Which scope each route needs: one table, read by the token check (auth.py), /openapi.json and the tests.

A route missing from the table cannot be served: app.py refuses to build with it, and tests/test_scopes.py walks
every route of the app and of /openapi.json against this table. A token's scopes (SPEC 10.7) grant needs:
`submit` submits and reads jobs, `read` reads everything a tenant may see, `admin` does everything.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

SCOPES = ("submit", "read", "admin")
# what each scope of a token grants; `any` is any valid token (the document itself)
GRANTS: dict[str, frozenset[str]] = {
    "submit": frozenset({"any", "submit", "jobs", "work"}),
    "read": frozenset({"any", "jobs", "read"}),
    "admin": frozenset({"any", "submit", "jobs", "read", "admin", "work"}),
}


class Rule(NamedTuple):
    need: str  # public (no token), any, submit, jobs (read jobs by id or list), read, admin, work (external workers)
    whole: bool = False  # the whole deployment's affairs: a token bound to a tenant gets 403


PUBLIC, ANY, SUBMIT, JOBS, READ, ADMIN = (Rule(n) for n in ("public", "any", "submit", "jobs", "read", "admin"))
WORK = Rule("work", whole=True)  # external workers lease any tenant's QUEUE jobs: tenant-less tokens only
OPERATOR_READ, OPERATOR = Rule("read", whole=True), Rule("admin", whole=True)

ROUTES: dict[tuple[str, str], Rule] = {
    # jobs (SPEC 2, 3)
    ("POST", "/task_in_queue"): SUBMIT,
    ("WS", "/ws_task"): SUBMIT,
    ("GET", "/task_resp/{id}"): JOBS,
    ("GET", "/jobs"): JOBS,
    ("GET", "/jobs/{id}"): JOBS,
    ("DELETE", "/jobs/{id}"): SUBMIT,
    ("GET", "/dead"): READ,
    ("GET", "/dead/{id}"): READ,
    ("DELETE", "/dead/{id}"): ADMIN,
    ("POST", "/dead/{id}/retry"): ADMIN,
    ("GET", "/sys_info"): READ,
    ("GET", "/openapi.json"): ANY,
    ("GET", "/health"): PUBLIC,
    # flow control (SPEC 10.1)
    ("POST", "/jobs/{id}/run"): ADMIN,
    ("GET", "/keys"): READ,  # a tenant's token: its own keys (poulpe/tenants.py)
    ("GET", "/keys/{key}"): READ,
    ("PUT", "/keys/{key}"): ADMIN,
    ("DELETE", "/keys/{key}"): ADMIN,
    ("POST", "/pause"): OPERATOR,
    ("POST", "/resume"): OPERATOR,
    # chains, batches, labels and bulk actions (SPEC 10.3, 10.4): a tenant's batch lives in its namespace, as its jobs
    # do (poulpe/tenants.py); a bulk action is the deployment's operator's tool, so a tenant's token gets 403
    ("POST", "/batches"): SUBMIT,
    ("GET", "/batches/{id}"): JOBS,
    ("POST", "/actions"): OPERATOR,
    ("GET", "/actions/{id}"): OPERATOR_READ,
    # the operator's view and the dashboard (its page and assets hold no data)
    ("GET", "/metrics"): READ,  # a tenant's token: its own gauges only (poulpe/tenants.py)
    ("GET", "/cron"): OPERATOR_READ,
    ("PUT", "/cron/{id}"): OPERATOR,  # a cron line is the whole deployment's: run, pause, backfill (SPEC 10.5)
    ("POST", "/cron/{id}/run"): OPERATOR,
    ("POST", "/cron/{id}/backfill"): OPERATOR,
    ("GET", "/alerts"): OPERATOR_READ,
    ("GET", "/history"): OPERATOR_READ,
    ("GET", "/"): PUBLIC,
    ("GET", "/dashboard.js"): PUBLIC,
    ("GET", "/dashboard.css"): PUBLIC,
    # external workers (SPEC 6)
    ("GET", "/workers"): OPERATOR_READ,
    ("POST", "/workers/{type}/hello"): WORK,
    ("POST", "/workers/{type}/heartbeat"): WORK,
    ("POST", "/workers/{type}/lease"): WORK,
    ("POST", "/jobs/{id}/complete"): WORK,
    ("POST", "/jobs/{id}/fail"): WORK,
    # kingtask (SPEC 7)
    ("POST", "/api/v1/task"): SUBMIT,
    ("POST", "/api/v1/task/script"): SUBMIT,
    ("POST", "/api/v1/task/rpc"): SUBMIT,
    ("GET", "/api/v1/task/result/{id}"): JOBS,
    ("GET", "/api/v1/task/count/undo"): READ,
    ("GET", "/api/v1/task/result/success/{date}"): OPERATOR_READ,
    ("GET", "/api/v1/task/result/failure/{date}"): OPERATOR_READ,
    # easyTask (SPEC 6): its submission, and its workers' routes
    ("PUT", "/api/putask/{type}"): SUBMIT,
    ("GET", "/querytask"): WORK,
    ("POST", "/updatetask"): WORK,
    ("GET", "/sayhi"): WORK,
    ("GET", "/beat"): WORK,
    ("GET", "/newtype"): WORK,
}
PUBLIC_PATHS = frozenset(path for (_, path), rule in ROUTES.items() if rule is PUBLIC)


def rule_of(method: str, path: str) -> Rule:
    """The route's rule; KeyError for a route nobody gave a scope (app.py refuses to start with one)."""
    return ROUTES[(method.upper(), path)]


@functools.cache
def needs_of(scopes: frozenset[str]) -> frozenset[str]:
    """Every need these scopes grant (computed once per set of scopes: the check is one set lookup)."""
    return frozenset({"public"}.union(*(GRANTS[scope] for scope in scopes)))


def allowed(scopes: frozenset[str], rule: Rule) -> bool:
    return rule.need in needs_of(scopes)

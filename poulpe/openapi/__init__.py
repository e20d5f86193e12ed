"""GET /openapi.json: every route poulpe serves, described exactly enough for a fuzzer to hold poulpe to it.

The document is generated: each operation of the route tables (routes.py, compat.py) names the types of its body,
answers and parameters, and msgspec writes their JSON Schemas (build.py). A body's schema comes from the struct that
parses it, so it says what poulpe refuses by shape alone (a wrong type, an unknown field, a number out of range):
such a request gets 400 naming the field. Rules between fields or about the running poulpe (a URL for the HTTP
methods, not both `delay` and `at`, `cc` within `--workers`, EXEC only with `--exec_dir`, `--allow_hosts`) are in
the descriptions: they answer 400 too, but a schema cannot carry them. tests/e2e/test_schemathesis.py checks the
document against the running server; tests/test_openapi.py compares it with the hand-written one it replaced.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from poulpe import __version__
from poulpe.openapi import build
from poulpe.openapi.compat import EASYTASK, KINGTASK
from poulpe.openapi.cron import CRON
from poulpe.openapi.flows import FLOWS, with_filters
from poulpe.openapi.observe import OBSERVE
from poulpe.openapi.routes import JOBS, KEYS, WORKERS
from poulpe.scopes import SCOPES, Rule, allowed, rule_of

OPERATIONS = [*with_filters(JOBS), *KINGTASK, *WORKERS, *EASYTASK, *KEYS, *OBSERVE, *CRON, *FLOWS]


@functools.cache
def _generated() -> tuple[dict[str, Any], dict[str, Any]]:
    of, components = build.schemas(OPERATIONS)
    described = build.paths(OPERATIONS, of)
    for path, operations in described.items():
        for method, operation in operations.items():
            secure(operation, rule_of(method, path))  # KeyError: a route with no scope (poulpe/scopes.py)
    return described, components


_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}


def secure(operation: dict[str, Any], rule: Rule) -> None:
    """The scope the route needs (SPEC 10.7), as the operation's security requirement and its 403 and 429."""
    operation["x-poulpe-scope"] = rule.need
    if rule.need == "public":
        operation["security"] = []
        return
    grants = [scope for scope in SCOPES if allowed(frozenset({scope}), rule)]
    operation["security"] = [{"bearer": [scope]} for scope in grants]
    if rule.whole:
        operation["x-poulpe-tenants"] = False
    why = f"The token lacks the scope ({' or '.join(grants)})"
    responses = operation["responses"]
    why += ", or has a tenant" if rule.whole else ""
    if "403" in responses:  # kingtask's own refusal: the same status, its own body
        responses["403"]["description"] += f"; or: {why}"
    else:
        responses["403"] = {"description": why, "content": _ERROR}
    if rule.need == "submit":
        responses["429"] = {
            "description": "Past the token's rate or its tenant's max_pending: see Retry-After",
            "content": _ERROR,
        }
    operation["responses"] = dict(sorted(responses.items()))


def document() -> dict[str, Any]:
    """A fresh copy: generated once (some 70 ms, at the first call), handed to callers that may change theirs."""
    paths, components = copy.deepcopy(_generated())
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "poulpe",
            "version": __version__,
            "description": "A job manager: HTTP calls, programs and mails, now or later, retried and never lost. "
            "With --token or --tokens, every route but /health and the dashboard's page needs `Authorization: Bearer "
            "<token>`, and a token's scopes (submit, read, admin) say which routes it may call: each operation's "
            "`security` lists the scopes that open it (`x-poulpe-scope` names its need; `x-poulpe-tenants: false`: "
            "not for a tenant's token). Every error answer is "
            '`{"result": "Fail", "error": <sentence>, "field": <field or null>}`. The WebSocket intake `/ws_task` '
            "takes the same job JSON (docs/api.md); it is not an OpenAPI operation.",
        },
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
    }

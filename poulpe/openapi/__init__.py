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
from poulpe.openapi.flows import FLOWS, with_filters
from poulpe.openapi.observe import OBSERVE
from poulpe.openapi.routes import JOBS, KEYS, WORKERS

OPERATIONS = [*with_filters(JOBS), *KINGTASK, *WORKERS, *EASYTASK, *KEYS, *OBSERVE, *FLOWS]


@functools.cache
def _generated() -> tuple[dict[str, Any], dict[str, Any]]:
    of, components = build.schemas(OPERATIONS)
    return build.paths(OPERATIONS, of), components


def document() -> dict[str, Any]:
    """A fresh copy: generated once (some 70 ms, at the first call), handed to callers that may change theirs."""
    paths, components = copy.deepcopy(_generated())
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
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
    }

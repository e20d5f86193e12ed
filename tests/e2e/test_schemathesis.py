"""Schemathesis against poulpe's own /openapi.json, with poulpe run as a subprocess.

Every operation gets `POULPE_FUZZ_EXAMPLES` generated requests (default 30; docs/fuzzing.md gives the command for a
large run), valid and invalid ones. No answer may be a 5xx, differ from the document (status, content type, body
schema), or accept a request the document says is malformed; and poulpe must still be healthy afterwards.
"""

from __future__ import annotations

import inspect
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.pytest import _test_builder  # no public way to defer the building (see _build_when_run)
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.routing import Route

from poulpe.app import create_app
from poulpe.job_in import JobIn, RetryIn
from poulpe.openapi import document
from poulpe.settings import Settings
from tests.poulpe_process import Poulpe

EXAMPLES = int(os.environ.get("POULPE_FUZZ_EXAMPLES", "30"))
TOKEN = "fuzz-s3cret-token"
# positive_data_acceptance is left out: see docs/fuzzing.md (rules the schema cannot carry answer 400 on valid shapes)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
    ignored_auth,
]
# A long poll or a `wait` holds the answer up to 300 s on a job that never ends (a QUEUE job has no worker here):
# they are cut to this, which still exercises the "not final in time" answers.
HOLD = 0.05
# Generated extra headers may include these: they frame the HTTP message, so a garbage value is refused by uvicorn
# (plain-text "400 Invalid HTTP request") before poulpe sees the request. tests/e2e/test_hostile_input.py covers
# what poulpe itself does with odd lengths and encodings.
FRAMING = frozenset(
    {
        "transfer-encoding",
        "content-length",
        "host",
        "connection",
        "upgrade",
        "expect",
        "te",
        "trailer",
        "keep-alive",
        "proxy-connection",
    }
)
STATS: Counter[str] = Counter()  # requests by generation mode
ANSWERS: Counter[int] = Counter()  # answers by status code


def _config() -> SchemathesisConfig:
    default_rejections = ["400", "401", "403", "404", "405", "406", "409", "415", "422", "428", "429"]
    return SchemathesisConfig.from_dict(
        {
            "auth": {"openapi": {"bearer": {"bearer": TOKEN}}},
            # the token is always sent: garbage tokens would spend half the budget on 401s; `ignored_auth`
            # below and tests/e2e/test_auth_secrets.py hold poulpe to its token instead
            "generation": {"mode": "all", "database": "none", "with-security-parameters": False},
            "checks": {"negative_data_rejection": {"expected-statuses": default_rejections}},
            "operations": [
                {
                    # a malformed job inside a batch fails its own slot only: the batch answers 207
                    "include-path": "/task_in_queue",
                    "checks": {"negative_data_rejection": {"expected-statuses": [*default_rejections, "207"]}},
                }
            ],
        }
    )


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Poulpe]:
    """One poulpe for every operation (so that listings meet the jobs fuzzed before); afterwards it must still be
    alive, healthy and free of tracebacks."""
    # --allow_hosts: generated HTTP jobs may only call loopback, never a host on the internet
    flags = ("--allow_hosts", "127.0.0.1", "--workers", "2", "--max_retry", "0")
    proc = Poulpe(tmp_path_factory.mktemp("fuzz"), *flags, env={"POULPE_TOKEN": TOKEN}, token=TOKEN).start()
    request.addfinalizer(proc.stop)
    served = httpx.get(f"{proc.url}/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert served.status_code == 200 and served.json() == document(), "the document fuzzed is not the one served"
    STATS.clear()
    ANSWERS.clear()
    started = time.monotonic()
    yield proc
    elapsed = time.monotonic() - started
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    modes = ", ".join(f"{key} {value}" for key, value in sorted(STATS.items()))
    answers = ", ".join(f"{key}: {value}" for key, value in sorted(ANSWERS.items()))
    if reporter is not None:
        reporter.write_line(
            f"\nfuzz: {sum(STATS.values())} requests ({modes}) in {elapsed:.1f}s with POULPE_FUZZ_EXAMPLES={EXAMPLES}; "
            f"answers {answers}"
        )
    assert proc.proc is not None and proc.proc.poll() is None, f"poulpe died while fuzzed:\n{proc.log()[-5000:]}"
    assert httpx.get(f"{proc.url}/health", timeout=10).json() == {"ok": True}
    log = proc.log()
    assert "Traceback" not in log and "unexpected error" not in log, log[-5000:]


@pytest.fixture(scope="module")
def connection() -> Iterator[requests.Session]:
    """One keep-alive connection for every request: a new one per request, and the proxy settings read from the
    environment for each, cost more CPU than the requests themselves (poulpe is on loopback, never behind a proxy)."""
    with requests.Session() as session:
        session.trust_env = False
        yield session


def _build_when_run(**how: Any) -> Callable[..., None]:
    """The test of one operation, built by schemathesis when it first runs instead of when pytest collects it.

    Building computes every operation's coverage cases and examples (about 3 s of CPU); each pytest-xdist worker
    collects the whole suite, and all but one never run these tests. The test built is the very one schemathesis
    builds at collection (same phases, settings, seed and cases): only the moment changes."""
    build = _EAGER_BUILD
    built: list[Callable[..., None]] = []

    def run(**fixtures: Any) -> None:
        if not built:
            built.append(build(**how))
            run.__dict__.update(built[0].__dict__)  # schemathesis reads its marks here when it reports an error
        built[0](**fixtures)

    test = how["test_func"]
    signature = inspect.signature(test)
    run.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[parameter for parameter in signature.parameters.values() if parameter.name != "case"]
    )
    run.__name__, run.__doc__, run.__module__ = test.__name__, test.__doc__, test.__module__
    run.pytestmark = getattr(test, "pytestmark", [])  # type: ignore[attr-defined]
    return run


_EAGER_BUILD = _test_builder.build_operation_test
_test_builder.build_operation_test = _build_when_run  # schemathesis's collector looks it up at each collection


# The document is poulpe's own: `fuzzed` checks that /openapi.json serves exactly this one. It is loaded at import
# time because schemathesis's fixture-based loader (`schemathesis.pytest.from_fixture`) fails under pytest 9.2
# ('Function' object has no attribute '_nodeid'); this way also gives one pytest test per operation.
schema = schemathesis.openapi.from_dict(document(), config=_config())


def _short_wait(value: Any) -> Any:
    """`wait` in a job: a number of seconds in (HOLD, 300] becomes HOLD; anything else stays (and is refused)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and HOLD < value <= 300:
        return HOLD
    return value


def _short_timeout(value: Any) -> Any:
    """`?timeout=` as the fuzzer drew it, cut the same way. Absent, empty, or a value that serializes to nothing
    (an empty list, an object) would mean the 30 s default: those become HOLD too."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return _short_wait(value)
    if isinstance(value, str):
        try:
            return HOLD if value == "" or HOLD < float(value) <= 300 else value
        except ValueError:
            return value
    if isinstance(value, list) and value:
        return [_short_timeout(item) for item in value]
    return HOLD


def _prepare(case: schemathesis.Case) -> None:
    """Cut the holds to HOLD and drop generated framing headers (see FRAMING)."""
    if isinstance(case.headers, MutableMapping):
        for name in [name for name in case.headers if name.lower() in FRAMING]:
            del case.headers[name]
    if case.path == "/task_resp/{id}":
        case.query = case.query if isinstance(case.query, MutableMapping) else {}
        case.query["timeout"] = _short_timeout(case.query.get("timeout"))
    if case.path == "/workers/{type}/lease" and isinstance(case.body, dict) and "wait" in case.body:
        case.body["wait"] = _short_wait(case.body["wait"])
    if case.path == "/task_in_queue":
        for job in case.body if isinstance(case.body, list) else [case.body]:
            if isinstance(job, dict) and "wait" in job:
                job["wait"] = _short_wait(job["wait"])


@schema.parametrize()
@pytest.mark.timeout(max(120, EXAMPLES))  # one operation, POULPE_FUZZ_EXAMPLES requests and the shrinking after
@settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_poulpe_answers_as_its_document_says(
    case: schemathesis.Case, fuzzed: Poulpe, connection: requests.Session
) -> None:
    _prepare(case)
    mode = case.meta.generation.mode.value if case.meta is not None else "explicit"
    STATS[mode] += 1
    response = case.call_and_validate(base_url=fuzzed.url, session=connection, checks=CHECKS)
    ANSWERS[response.status_code] += 1


def test_every_route_is_in_the_document(tmp_path: Path) -> None:
    app = create_app(Settings(data=tmp_path / "p.db", dead=tmp_path / "dead"))
    served = {
        (route.path, method.lower())
        for route in app.routes
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"
    }
    described = {(path, method) for path, item in document()["paths"].items() for method in item}
    assert served - described == set(), "routes poulpe serves that /openapi.json does not describe"
    assert described - served == set(), "routes /openapi.json describes that poulpe does not serve"


def test_the_job_schema_lists_the_validators_fields() -> None:
    """The job schema is generated from the validator's structs (poulpe/openapi): it cannot drift from them."""
    schemas = document()["components"]["schemas"]
    job = schemas["JobIn"]
    assert set(job["properties"]) == set(JobIn.__struct_fields__)
    assert set(job["required"]) == {"method", "name"}
    assert job["additionalProperties"] is False
    assert {"$ref": "#/components/schemas/RetryIn"} in job["properties"]["retry"]["anyOf"]
    retry = schemas["RetryIn"]
    assert set(retry["properties"]) == set(RetryIn.__struct_fields__)
    assert retry["additionalProperties"] is False

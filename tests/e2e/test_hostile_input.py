"""Malformed and hostile requests against a running poulpe.

Each one gets a 4xx JSON answer `{"result": "Fail", "error": <sentence>, "field": <the field at fault or null>}`:
never a 500, never a hang, never a crash. Afterwards the same process still runs a good job.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.serving import ServedPoulpe
from tests.target import Target

JSON = "application/json"
URL = "http://127.0.0.1:9/x"  # a valid URL nobody listens on: these jobs are refused before they could run


def job(**fields: Any) -> dict[str, Any]:
    """A valid QUEUE job (it runs nowhere) with `fields` changed; a field given as ... is removed."""
    body: dict[str, Any] = {"method": "QUEUE", "name": "resize"}
    body.update(fields)
    return {key: value for key, value in body.items() if value is not ...}


def http(**fields: Any) -> dict[str, Any]:
    """A valid GET job to URL with `fields` changed."""
    return job(**{"method": "GET", "name": URL, **fields})


def raw(text: str) -> bytes:
    return text.encode()


DEEP = 100_000
BAD = [
    # --- a wrong type for every field ----------------------------------------------------------------------------
    pytest.param(job(id=42), 400, "id", id="id-number"),
    pytest.param(job(method=1), 400, "method", id="method-number"),
    pytest.param(job(name=["resize"]), 400, "name", id="name-array"),
    pytest.param(http(params=12), 400, "params", id="params-number-for-GET"),
    pytest.param(job(delay="10"), 400, "delay", id="delay-string"),
    pytest.param(job(at=True), 400, "at", id="at-bool"),
    pytest.param(job(cc=1), 400, "cc", id="cc-number"),
    pytest.param(job(wait="5"), 400, "wait", id="wait-string"),
    pytest.param(job(timeout=[]), 400, "timeout", id="timeout-array"),
    pytest.param(job(retry="3"), 400, "retry", id="retry-string"),
    pytest.param(job(retry={"max": "3"}), 400, "retry.max", id="retry.max-string"),
    pytest.param(job(retry={"max": 2.5}), 400, "retry.max", id="retry.max-fraction"),
    pytest.param(job(retry={"intervals": "60"}), 400, "retry.intervals", id="retry.intervals-string"),
    pytest.param(job(retry={"intervals": [60, "x"]}), 400, "retry.intervals[1]", id="retry.intervals-item"),
    pytest.param(http(headers=["X-A: 1"]), 400, "headers", id="headers-array"),
    pytest.param(http(headers={"X-A": 1}), 400, "headers", id="headers-value-number"),
    pytest.param(job(callback={}), 400, "callback", id="callback-object"),
    pytest.param(job(meta="x"), 400, "meta", id="meta-string"),
    pytest.param(job(meta=[1]), 400, "meta", id="meta-array"),
    pytest.param(job(method=...), 400, "method", id="method-missing"),
    pytest.param(job(name=...), 400, "name", id="name-missing"),
    # --- unknown fields: a typo must not silently change what the job does --------------------------------------
    pytest.param(job(delai=5), 400, "delai", id="unknown-top-level"),
    pytest.param(job(retry={"max": 1, "maxx": 2}), 400, "retry.maxx", id="unknown-in-retry"),
    # --- numbers out of range, huge, negative, NaN-like -----------------------------------------------------------
    pytest.param(job(delay=1e308), 400, "delay", id="delay-1e308"),
    pytest.param(job(delay=-1), 400, "delay", id="delay-negative"),
    pytest.param(job(timeout=-1), 400, "timeout", id="timeout-negative"),
    pytest.param(job(timeout=0), 400, "timeout", id="timeout-zero"),
    pytest.param(job(wait=1e9), 400, "wait", id="wait-1e9"),
    pytest.param(job(wait=-0.5), 400, "wait", id="wait-negative"),
    pytest.param(job(at=1e20), 400, "at", id="at-after-year-9999"),
    pytest.param(job(retry={"max": -1}), 400, "retry.max", id="retry.max-negative"),
    pytest.param(job(retry={"max": 10**6}), 400, "retry.max", id="retry.max-huge"),
    pytest.param(job(retry={"intervals": [-1]}), 400, "retry.intervals[0]", id="retry.intervals-negative"),
    pytest.param(job(retry={"backoff": "linear"}), 400, "retry.backoff", id="retry.backoff-unknown"),
    pytest.param(job(retry={"intervals": [1], "max": 2}), 400, "retry.intervals", id="retry-intervals-and-max"),
    pytest.param(job(delay=1, at=2), 400, "at", id="delay-and-at"),
    pytest.param(job(cc="99"), 400, "cc", id="cc-99"),
    pytest.param(job(cc="-1"), 400, "cc", id="cc-negative"),
    pytest.param(job(cc="1e3"), 400, "cc", id="cc-1e3"),
    pytest.param(job(cc="\uff11"), 400, "cc", id="cc-fullwidth-digit"),
    pytest.param(job(cc="0 x"), 400, "cc", id="cc-word"),
    pytest.param(job(delay="NaN"), 400, "delay", id="delay-NaN-string"),
    pytest.param(job(timeout="Infinity"), 400, "timeout", id="timeout-Infinity-string"),
    pytest.param(job(at="NaN"), 400, "at", id="at-NaN-string"),
    pytest.param(job(at="2030-01-01T09:00:00"), 400, "at", id="at-without-offset"),
    pytest.param(raw('{"method": "QUEUE", "name": "t", "delay": NaN}'), 400, None, id="NaN-literal"),
    pytest.param(raw('{"method": "QUEUE", "name": "t", "wait": -Infinity}'), 400, None, id="Infinity-literal"),
    pytest.param(
        raw('{"method": "QUEUE", "name": "t", "delay": 1' + "0" * 5000 + "}"), 400, "delay", id="huge-number-literal"
    ),
    pytest.param(
        raw('{"method": "QUEUE", "name": "t", "retry": {"max": 1e400}}'), 400, "retry.max", id="number-beyond-double"
    ),
    pytest.param(raw("1" + "0" * 100_000), 400, None, id="huge-number-as-body"),
    # --- ids ---------------------------------------------------------------------------------------------------------
    pytest.param(job(id="a" * 129), 400, "id", id="id-too-long"),
    pytest.param(job(id=""), 400, "id", id="id-empty"),
    pytest.param(job(id="a/b"), 400, "id", id="id-slash"),
    pytest.param(job(id="../../etc/passwd"), 400, "id", id="id-path-traversal"),
    pytest.param(job(id="a b"), 400, "id", id="id-space"),
    pytest.param(job(id="caf\u00e9"), 400, "id", id="id-unicode"),
    pytest.param(job(id="abc\n"), 400, "id", id="id-trailing-newline"),
    pytest.param(job(id="a\u0000b"), 400, "id", id="id-NUL"),
    # --- methods -----------------------------------------------------------------------------------------------------
    pytest.param(job(method="FETCH"), 400, "method", id="method-unknown"),
    pytest.param(job(method=""), 400, "method", id="method-empty"),
    pytest.param(job(method="po\u017ft"), 400, "method", id="method-long-s-uppercases-to-POST"),
    pytest.param(job(method="EXEC", name="add"), 400, "method", id="EXEC-without-exec_dir"),
    pytest.param(job(method="MAIL_TO", name="a@example.com"), 400, "method", id="MAIL_TO-without-smtp"),
    # --- names and URLs ----------------------------------------------------------------------------------------------
    pytest.param(http(name="not a url"), 400, "name", id="name-not-a-url"),
    pytest.param(http(name="file:///etc/passwd"), 400, "name", id="name-file-url"),
    pytest.param(http(name="gopher://127.0.0.1:70/_x"), 400, "name", id="name-gopher"),
    pytest.param(http(name="http://"), 400, "name", id="name-http-without-host"),
    pytest.param(http(name="http:///etc/passwd"), 400, "name", id="name-empty-host"),
    pytest.param(http(name="http://127.0.0.1/a\r\nX-Injected: 1"), 400, "name", id="name-CRLF"),
    pytest.param(http(name="http://127.0.0.1/a b"), 400, "name", id="name-space"),
    pytest.param(http(name="http://[::1/x"), 400, "name", id="name-broken-ipv6"),
    pytest.param(http(name="http://127.0.0.1:99999/"), 400, "name", id="name-bad-port"),
    pytest.param(http(name=""), 400, "name", id="name-empty"),
    pytest.param(http(name="http://h/" + "a" * 5000), 400, "name", id="name-too-long"),
    pytest.param(job(name="bad type!"), 400, "name", id="queue-type-bad"),
    pytest.param(job(name="resize\n"), 400, "name", id="queue-type-trailing-newline"),
    pytest.param(job(callback="file:///etc/passwd"), 400, "callback", id="callback-file-url"),
    pytest.param(job(callback="http://"), 400, "callback", id="callback-without-host"),
    # --- header injection ------------------------------------------------------------------------------------------
    pytest.param(http(headers={"X-A": "1\r\nX-Injected: 2"}), 400, "headers", id="header-value-CRLF"),
    pytest.param(http(headers={"X-A\r\nX-Injected": "2"}), 400, "headers", id="header-name-CRLF"),
    pytest.param(http(headers={"X-A\n": "1"}), 400, "headers", id="header-name-trailing-newline"),
    pytest.param(http(headers={"X-A: b": "1"}), 400, "headers", id="header-name-colon"),
    pytest.param(http(headers={"": "1"}), 400, "headers", id="header-name-empty"),
    pytest.param(http(headers={"Host": "evil.example"}), 400, "headers", id="header-Host"),
    pytest.param(http(headers={"Content-Length": "0"}), 400, "headers", id="header-Content-Length"),
    pytest.param(http(headers={"Transfer-Encoding": "chunked"}), 400, "headers", id="header-Transfer-Encoding"),
    pytest.param(http(headers={"poulpe-job-id": "forged"}), 400, "headers", id="header-Poulpe-forged"),
    pytest.param(http(headers={"X-A": "a" * 9000}), 400, "headers", id="header-value-too-long"),
    pytest.param(http(headers={f"X-{n}": "1" for n in range(65)}), 400, "headers", id="headers-too-many"),
    # --- params and meta ---------------------------------------------------------------------------------------------
    pytest.param(job(params="x" * (600 * 1024)), 400, "params", id="params-over-512KiB"),
    pytest.param(http(method="POST", params="{not json"), 400, "params", id="POST-params-string-not-JSON"),
    pytest.param(http(method="POST", params="[" * DEEP), 400, "params", id="POST-params-string-deep"),
    pytest.param(http(params={"a": {"b": 1}}), 400, "params", id="GET-params-nested"),
    pytest.param(
        raw('{"method": "QUEUE", "name": "t", "params": ' + "[" * DEEP + "}"), 400, None, id="params-nested-100000-deep"
    ),
    pytest.param(b'{"method": "QUEUE", "name": "t", "params": "\xff\xfe"}', 400, "params", id="params-not-UTF-8"),
    pytest.param(job(meta={"x": "a" * 20_000}), 400, "meta", id="meta-over-16KiB"),
    # --- the body as a whole -----------------------------------------------------------------------------------------
    pytest.param(b"", 400, None, id="empty-body"),
    pytest.param(b"   \n", 400, None, id="blank-body"),
    pytest.param(b"method=QUEUE&name=t", 400, None, id="form-encoded-as-JSON"),
    pytest.param(b'{"method": "QUEUE", "name": "\xff\xfe"}', 400, None, id="not-UTF-8"),
    pytest.param(raw('{"method": "QUEUE", "name": "\\ud800"}'), 400, None, id="lone-surrogate"),
    pytest.param(b"\xef\xbb\xbf" + raw(json.dumps(job())), 400, None, id="BOM-prefixed"),
    pytest.param(raw(json.dumps(job()) + " x"), 400, None, id="trailing-garbage"),
    pytest.param(raw(json.dumps(job()) * 2), 400, None, id="two-objects"),
    pytest.param(raw('{"method": "QUEUE", "name": "t"'), 400, None, id="truncated"),
    pytest.param(None, 400, None, id="JSON-null"),
    pytest.param(42, 400, None, id="JSON-number"),
    pytest.param("job", 400, None, id="JSON-string"),
    pytest.param(True, 400, None, id="JSON-true"),
    pytest.param([], 400, None, id="empty-batch"),
    pytest.param([job()] * 1001, 400, None, id="batch-of-1001"),
    pytest.param(raw("[" * DEEP), 400, None, id="100000-brackets"),
    pytest.param(raw('{"method": "QUEUE", "name": "t", "meta": ' + '{"a":' * DEEP), 400, None, id="meta-100000-deep"),
    pytest.param(raw('{"method": "QUEUE", "name": "a", "name": "b"}'), 400, "name", id="duplicate-key"),
    pytest.param(raw('{"method": "QUEUE", "name": "a", "n\\u0061me": "b"}'), 400, "name", id="duplicate-escaped-key"),
    pytest.param(
        raw('{"method": "QUEUE", "name": "a", "retry": {"max": 1, "max": 9}}'),
        400,
        "retry.max",
        id="duplicate-key-in-retry",
    ),
]


@pytest.fixture(scope="module")
def proc(module_served: Callable[..., ServedPoulpe]) -> ServedPoulpe:
    return module_served("--workers", "4")


def refused(answer: httpx.Response, status: int, field: str | None) -> dict[str, Any]:
    """Assert the answer is poulpe's JSON error with this status and field; return it."""
    assert answer.status_code == status, answer.text[:500]
    assert answer.headers["content-type"] == JSON
    error: dict[str, Any] = answer.json()
    assert error.keys() == {"result", "error", "field"}, error
    assert error["result"] == "Fail"
    assert isinstance(error["error"], str) and len(error["error"]) > 5
    assert len(error["error"]) < 1000, "an error quotes what it refuses, never all of it"
    assert error["field"] == field, error
    return error


def post(client: httpx.Client, body: Any, content_type: str | None = JSON) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": content_type} if content_type else {}
    return client.post("/task_in_queue", content=content, headers=headers)


@pytest.mark.parametrize(("body", "status", "field"), BAD)
def test_a_malformed_job_is_refused_naming_the_field(
    client: httpx.Client, body: Any, status: int, field: str | None
) -> None:
    refused(post(client, body), status, field)


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "application/jsonx", "json"]
)
def test_a_body_not_sent_as_json_is_refused_with_415(client: httpx.Client, content_type: str | None) -> None:
    refused(post(client, job(), content_type), 415, None)


def test_a_json_content_type_with_parameters_is_accepted(client: httpx.Client) -> None:
    answer = post(client, job(id="ct-charset"), "Application/JSON; charset=utf-8")
    assert answer.status_code == 202, answer.text


def test_a_body_over_one_mebibyte_is_refused_with_413(client: httpx.Client) -> None:
    huge = raw(json.dumps(job(params="x" * (1100 * 1024))))
    refused(post(client, huge), 413, None)


def test_a_streamed_body_over_one_mebibyte_is_refused_with_413(client: httpx.Client) -> None:
    """Without Content-Length (chunked), poulpe counts while reading and stops at the limit."""

    def chunks() -> Iterator[bytes]:
        yield b'{"method": "QUEUE", "name": "t", "params": "'
        for _ in range(1100):
            yield b"x" * 1024
        yield b'"}'

    answer = client.post("/task_in_queue", content=chunks(), headers={"Content-Type": JSON})
    refused(answer, 413, None)


def test_a_batch_with_bad_slots_fails_only_those_slots(client: httpx.Client) -> None:
    batch = [job(id="batch-good"), job(method="FETCH"), 42, job(delai=1), http(headers={"X-A": "1\r\nX-B: 2"})]
    answer = post(client, batch)
    assert answer.status_code == 207, answer.text
    slots = answer.json()
    assert len(slots) == 5
    assert slots[0]["result"] == "OK" and slots[0]["id"] == "batch-good"
    for slot, field in zip(slots[1:], ["method", None, "delai", "headers"], strict=True):
        assert slot.keys() == {"result", "error", "field"} and slot["result"] == "Fail", slot
        assert slot["field"] == field, slot
    assert client.get("/jobs/batch-good").status_code == 202  # the good one was stored


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/task_resp/x?timeout=abc", "timeout"),
        ("/task_resp/x?timeout=-1", "timeout"),
        ("/task_resp/x?timeout=1e999", "timeout"),
        ("/task_resp/x?timeout=nan", "timeout"),
        ("/task_resp/x?timeout=301", "timeout"),
        ("/jobs?page=0", "page"),
        ("/jobs?page=-3", "page"),
        ("/jobs?page=abc", "page"),
        ("/jobs?page=1.5", "page"),
        ("/jobs?page=" + "9" * 40, "page"),
        ("/jobs?size=100000", "size"),
        ("/jobs?size=0", "size"),
        ("/jobs?status=bogus", "status"),
        ("/jobs?method=FETCH", "method"),
        ("/jobs?method=GET&type=resize", "type"),
        ("/dead?page=0", "page"),
        ("/dead?size=100000", "size"),
    ],
)
def test_a_bad_query_string_is_refused_naming_the_parameter(client: httpx.Client, path: str, field: str) -> None:
    refused(client.get(path), 400, field)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/jobs/" + "a" * 10_000),
        ("GET", "/task_resp/" + "a" * 10_000 + "?timeout=0"),
        ("DELETE", "/jobs/" + "a" * 10_000),
        ("GET", "/dead/" + "a" * 10_000),
        ("POST", "/dead/" + "a" * 10_000 + "/retry"),
        ("GET", "/jobs/%00%ff%fe%c0%af"),
        ("GET", "/jobs/%zz%"),
        ("GET", "/jobs/%E2%80%AE%F0%9F%90%99"),
        ("GET", "/jobs/..%2F..%2Fetc%2Fpasswd"),
        ("GET", "/dead/..%2F..%2Fetc%2Fpasswd"),
        ("GET", "/dead/%2E%2E"),  # a bare `/dead/..` is `/` once the client removes dot segments: the dashboard
        ("DELETE", "/dead/%2e%2e"),
        ("POST", "/dead/%2e%2e/retry"),
        ("GET", "/jobs/%0d%0aSet-Cookie:%20x=1"),
        ("GET", "/nowhere"),
    ],
)
def test_a_hostile_path_gets_a_json_404(client: httpx.Client, method: str, path: str) -> None:
    answer = client.request(method, path)
    refused(answer, 404, None)
    assert "set-cookie" not in answer.headers


def test_a_route_with_the_wrong_method_gets_a_json_405(client: httpx.Client) -> None:
    refused(client.get("/task_in_queue"), 405, None)


def test_poulpe_still_runs_a_good_job_afterwards(proc: ServedPoulpe, client: httpx.Client, target: Target) -> None:
    """Whatever came before (in this module, the whole hostile list), the process is alive and works."""
    assert proc.alive()
    answer = post(client, {"method": "GET", "name": target.url("/echo"), "params": {"q": "after"}, "wait": 20})
    assert answer.status_code == 200, answer.text
    done = answer.json()
    assert done["status"] == "succeeded", done
    assert json.loads(done["result"]["body"])["query"] == {"q": "after"}
    assert client.get("/health").json() == {"ok": True}
    assert "Traceback" not in proc.log()

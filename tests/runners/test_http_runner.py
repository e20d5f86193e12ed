"""HttpRunner against a real HTTP server (tests/target.py): what a target receives and what poulpe records."""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import hmac
import json
import socket
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from poulpe.job import Job, Method
from poulpe.outbound import host_allowed
from poulpe.runners import BODY_CAP
from poulpe.runners.http import HttpRunner, redact
from poulpe.settings import Secret
from tests.target import Target


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    with Target() as server:
        yield server


@pytest.fixture(autouse=True)
def _clean(target: Target) -> None:
    target.reset()


@pytest.fixture
async def runner() -> AsyncIterator[HttpRunner]:
    runner = HttpRunner(version="9.8.7")
    yield runner
    await runner.close()


def make_job(url: str, method: Method = Method.GET, params: Any = None, **fields: Any) -> Job:
    return Job(id=fields.pop("id", "t1"), method=method, name=url, params=params, **fields)


def echoed(outcome: Any) -> dict[str, Any]:
    assert outcome.ok, outcome.error
    result: dict[str, Any] = json.loads(outcome.result["body"])
    return result


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- params -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("params", ["a=1&b=two", "?a=1&b=two"])
async def test_get_query_string(runner: HttpRunner, target: Target, params: str) -> None:
    outcome = await runner.run(make_job(target.url("/echo"), params=params), 1, 5)
    assert echoed(outcome)["query"] == {"a": "1", "b": "two"}
    assert outcome.result["status_code"] == 200
    assert outcome.result["elapsed_ms"] > 0


async def test_get_object_params_with_lists_and_booleans(runner: HttpRunner, target: Target) -> None:
    params = {"a": 1, "b": True, "c": ["x", "y z"], "d": 1.5}
    outcome = await runner.run(make_job(target.url("/echo"), params=params), 1, 5)
    assert echoed(outcome)["query_string"] == "a=1&b=true&c=x&c=y+z&d=1.5"


async def test_params_join_the_query_already_in_the_url(runner: HttpRunner, target: Target) -> None:
    outcome = await runner.run(make_job(target.url("/echo", z="0"), params={"a": "1"}), 1, 5)
    assert echoed(outcome)["query_string"] == "z=0&a=1"
    outcome = await runner.run(make_job(target.url("/echo", z="0"), Method.DELETE, params="a=1"), 1, 5)
    assert echoed(outcome)["method"] == "DELETE"
    assert echoed(outcome)["query_string"] == "z=0&a=1"


async def test_post_json_string_kingtask_rpc_sum(runner: HttpRunner, target: Target) -> None:
    outcome = await runner.run(make_job(target.url("/sum"), Method.POST, '{"a":132,"b":75}'), 1, 5)
    assert outcome.ok
    assert outcome.result["body"] == "207"
    [call] = target.calls
    assert call.headers["Content-Type"] == "application/json"
    assert call.body == '{"a":132,"b":75}'


@pytest.mark.parametrize(("method", "params"), [(Method.PUT, {"x": [1, 2], "y": None}), (Method.PATCH, [1, "two"])])
async def test_object_or_array_is_sent_as_json(runner: HttpRunner, target: Target, method: Method, params: Any) -> None:
    body = echoed(await runner.run(make_job(target.url("/echo"), method, params), 1, 5))
    assert body["method"] == method
    assert json.loads(body["body"]) == params
    assert body["headers"]["Content-Type"] == "application/json"


async def test_post_without_params_has_no_body(runner: HttpRunner, target: Target) -> None:
    body = echoed(await runner.run(make_job(target.url("/echo"), Method.POST), 1, 5))
    assert body["body"] == ""
    assert "Content-Type" not in body["headers"]


@pytest.mark.parametrize("method", [Method.GET, Method.DELETE, Method.PUT, Method.PATCH])
async def test_a_call_without_a_body_names_no_content_type(runner: HttpRunner, target: Target, method: Method) -> None:
    body = echoed(await runner.run(make_job(target.url("/echo"), method), 1, 5))
    assert body["method"] == method
    assert "Content-Type" not in body["headers"]
    assert body["headers"]["User-Agent"].startswith("poulpe/")


async def test_a_body_that_is_not_json_fails_for_good_without_a_call(runner: HttpRunner, target: Target) -> None:
    outcome = await runner.run(make_job(target.url("/echo"), Method.POST, "{not json"), 1, 5)
    assert (outcome.ok, outcome.final) == (False, True)
    assert "not valid JSON" in (outcome.error or "")
    assert target.calls == []


# --- headers and signature -------------------------------------------------------------------------------------
async def test_poulpe_headers_and_job_headers(runner: HttpRunner, target: Target) -> None:
    headers = {"X-Trace": "abc", "Authorization": "Bearer t0k"}
    await runner.run(make_job(target.url("/echo"), id="job-42", headers=headers), 3, 5)
    [call] = target.calls
    assert call.headers["User-Agent"] == "poulpe/9.8.7"
    assert (call.job_id, call.attempt) == ("job-42", 3)
    assert call.headers["X-Trace"] == "abc"
    assert call.headers["Authorization"] == "Bearer t0k"


async def test_job_headers_may_replace_user_agent_but_not_what_poulpe_owns(runner: HttpRunner, target: Target) -> None:
    headers = {
        "user-agent": "my-bot/1",
        "Poulpe-Job-Id": "forged",
        "POULPE-ATTEMPT": "99",
        "Poulpe-Signature": "t=1,v1=00",
        "Host": "evil.example",
        "Content-Length": "1",
        "Content-Type": "application/vnd.api+json",
    }
    await runner.run(make_job(target.url("/echo"), Method.POST, {"a": 1}, headers=headers), 1, 5)
    [call] = target.calls
    assert call.headers.getall("User-Agent") == ["my-bot/1"]
    assert call.headers.getall("Poulpe-Job-Id") == ["t1"]
    assert call.headers.getall("Poulpe-Attempt") == ["1"]
    assert "Poulpe-Signature" not in call.headers
    assert call.headers["Host"] == f"127.0.0.1:{target.port}"
    assert call.headers.getall("Content-Type") == ["application/vnd.api+json"]
    assert call.body == '{"a":1}'


async def test_the_jobs_trace_context_replaces_one_its_headers_gave(runner: HttpRunner, target: Target) -> None:
    context = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    headers = {"TraceParent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tracestate": "old=1"}
    job = make_job(target.url("/echo"), headers=headers, traceparent=context, tracestate="vendor=abc")
    await runner.run(job, 1, 5)
    [call] = target.calls
    assert call.headers.getall("traceparent") == [context]
    assert call.headers.getall("tracestate") == ["vendor=abc"]


def verify(signature: str, body: bytes, key: bytes, tolerance: float = 300) -> bool:
    """What a target does (SPEC 4): recompute the HMAC of "<t>.<body>" and check that t is recent."""
    fields = dict(part.split("=", 1) for part in signature.split(","))
    expected = hmac.new(key, f"{fields['t']}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields["v1"]) and abs(time.time() - int(fields["t"])) < tolerance


@pytest.mark.parametrize(("method", "params"), [(Method.POST, {"amount": 12}), (Method.GET, None)])
async def test_signature_verifies_like_a_target_would(target: Target, method: Method, params: Any) -> None:
    runner = HttpRunner(signing_key=Secret("whsec-123"))
    try:
        assert (await runner.run(make_job(target.url("/echo"), method, params), 1, 5)).ok
    finally:
        await runner.close()
    [call] = target.calls
    signature = call.headers["Poulpe-Signature"]
    assert verify(signature, call.body.encode(), b"whsec-123")
    assert not verify(signature, call.body.encode() + b" ", b"whsec-123")
    assert not verify(signature, call.body.encode(), b"other-key")


async def test_no_signature_without_a_key(runner: HttpRunner, target: Target) -> None:
    await runner.run(make_job(target.url("/echo")), 1, 5)
    assert "Poulpe-Signature" not in target.calls[0].headers


# --- timeout, redirects, allowed hosts -----------------------------------------------------------------------------
async def test_timeout_bounds_the_attempt(runner: HttpRunner, target: Target) -> None:
    started = time.monotonic()
    outcome = await runner.run(make_job(target.url("/never")), 1, 0.3)
    assert time.monotonic() - started < 2
    assert (outcome.ok, outcome.final, outcome.error) == (False, False, "timed out after 0.3s")


async def test_a_shutdown_during_an_attempt_is_not_taken_for_its_timeout(runner: HttpRunner, target: Target) -> None:
    attempt = asyncio.create_task(runner.run(make_job(target.url("/never")), 1, 0.2))
    await asyncio.sleep(0.1)
    attempt.cancel()  # the shutdown's cancellation, before the attempt's time is up
    with pytest.raises(asyncio.CancelledError):
        await attempt
    # and the worker's task is left as it was: no cancellation is owed to its next step
    assert (await runner.run(make_job(target.url("/never")), 1, 0.1)).error == "timed out after 0.1s"
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_timeout_covers_every_redirect_hop(runner: HttpRunner, target: Target) -> None:
    url = target.url("/redirect", n=1, to=target.url("/slow", ms=2000))
    outcome = await runner.run(make_job(url), 1, 0.5)
    assert outcome.error == "timed out after 0.5s"


async def test_redirects_are_followed(runner: HttpRunner, target: Target) -> None:
    outcome = await runner.run(make_job(target.url("/redirect", n=3, to="/echo?hop=last")), 1, 5)
    assert echoed(outcome)["query"] == {"hop": "last"}
    assert [c.path for c in target.calls] == ["/redirect"] * 3 + ["/echo"]


async def test_five_redirects_are_fine_six_are_too_many(runner: HttpRunner, target: Target) -> None:
    assert (await runner.run(make_job(target.url("/redirect", n=5)), 1, 5)).ok
    outcome = await runner.run(make_job(target.url("/redirect", n=6)), 1, 5)
    assert (outcome.ok, outcome.error) == (False, "too many redirects (more than 5)")


@pytest.mark.parametrize(("code", "method", "body"), [(301, "GET", ""), (302, "GET", ""), (303, "GET", "")])
async def test_301_302_303_turn_into_get_without_body(
    runner: HttpRunner, target: Target, code: int, method: str, body: str
) -> None:
    url = target.url("/redirect", n=1, code=code)
    echo = echoed(await runner.run(make_job(url, Method.POST, {"a": 1}), 1, 5))
    assert (echo["method"], echo["body"]) == (method, body)
    assert "Content-Type" not in echo["headers"]


@pytest.mark.parametrize("code", [307, 308])
async def test_307_308_keep_method_and_body(runner: HttpRunner, target: Target, code: int) -> None:
    url = target.url("/redirect", n=1, code=code)
    echo = echoed(await runner.run(make_job(url, Method.PUT, {"a": 1}), 1, 5))
    assert (echo["method"], json.loads(echo["body"])) == ("PUT", {"a": 1})


async def test_credentials_do_not_follow_a_redirect_to_another_origin(runner: HttpRunner, target: Target) -> None:
    other = f"http://localhost:{target.port}/echo"
    headers = {"Authorization": "Bearer secret", "X-Keep": "1"}
    echo = echoed(await runner.run(make_job(target.url("/redirect", to=other), headers=headers), 1, 5))
    assert "Authorization" not in echo["headers"]
    assert echo["headers"]["X-Keep"] == "1"
    echo = echoed(await runner.run(make_job(target.url("/redirect", to="/echo"), headers=headers), 1, 5))
    assert echo["headers"]["Authorization"] == "Bearer secret"


async def test_allow_hosts_refuses_without_connecting(target: Target) -> None:
    runner = HttpRunner(allow_hosts=("example.com",))
    outcome = await runner.run(make_job(target.url("/echo")), 1, 5)
    await runner.close()
    assert (outcome.ok, outcome.final) == (False, True)
    assert outcome.error == "host 127.0.0.1 is not in --allow_hosts"
    assert target.calls == []


async def test_allow_hosts_checks_every_redirect_hop(target: Target) -> None:
    runner = HttpRunner(allow_hosts=(f"127.0.0.1:{target.port}",))
    try:
        assert (await runner.run(make_job(target.url("/redirect", to="/echo")), 1, 5)).ok
        outcome = await runner.run(make_job(target.url("/redirect", to=f"http://localhost:{target.port}/echo")), 1, 5)
    finally:
        await runner.close()
    assert (outcome.ok, outcome.final, outcome.error) == (False, True, "host localhost is not in --allow_hosts")
    assert [c.path for c in target.calls] == ["/redirect", "/echo", "/redirect"]


@pytest.mark.parametrize(
    ("url", "allow", "expected"),
    [
        ("http://api.example.com/x", (), True),
        ("http://API.Example.COM/x", ("api.example.com",), True),
        ("http://api.example.com./x", ("api.example.com",), True),
        ("http://evil.com/x", ("api.example.com",), False),
        ("http://api.example.com.evil.com/x", ("api.example.com",), False),
        ("http://a.b.example.com/x", ("*.example.com",), True),
        ("http://example.com/x", ("*.example.com",), False),
        ("http://notexample.com/x", ("*.example.com",), False),
        ("http://api.example.com:8080/x", ("api.example.com:8080",), True),
        ("http://api.example.com:8081/x", ("api.example.com:8080",), False),
        ("http://api.example.com/x", ("api.example.com:80",), True),
        ("https://api.example.com/x", ("api.example.com:80",), False),
        ("http://user:pw@api.example.com/x", ("api.example.com",), True),
        ("http://api.example.com@evil.com/x", ("api.example.com",), False),
        ("http://[::1]:9000/x", ("[::1]:9000",), True),
        ("http://[::1]:9000/x", ("::1",), True),
        ("http://host:99999/x", ("host",), False),
        ("not a url", ("host",), False),
    ],
)
def test_host_allowed(url: str, allow: tuple[str, ...], expected: bool) -> None:
    assert host_allowed(url, allow) is expected


# --- responses ---------------------------------------------------------------------------------------------------
async def test_body_is_capped_at_64_kib(runner: HttpRunner, target: Target) -> None:
    tracemalloc.start()
    try:
        outcome = await runner.run(make_job(target.url("/big", kb=5 * 1024)), 1, 10)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert outcome.ok
    assert outcome.result["body"] == "x" * BODY_CAP
    assert peak < 2 * 1024 * 1024  # the 5 MiB were never buffered
    # the dropped connection does not spoil the pool: the next call works
    assert (await runner.run(make_job(target.url("/big", kb=10)), 1, 5)).result["body"] == "x" * 10 * 1024


async def test_non_2xx_is_a_failure_with_the_result(runner: HttpRunner, target: Target) -> None:
    outcome = await runner.run(make_job(target.url("/status/404")), 1, 5)
    assert (outcome.ok, outcome.final, outcome.error, outcome.retry_after) == (False, False, "HTTP 404", None)
    assert outcome.result["status_code"] == 404
    assert outcome.result["body"] == "status 404"


async def test_repeated_response_headers_are_joined(runner: HttpRunner, target: Target) -> None:
    url = target.url("/status/201") + "&".join(["?header=X-Tag:a", "header=x-tag:b"])
    outcome = await runner.run(make_job(url), 1, 5)
    assert outcome.ok
    assert outcome.result["headers"]["X-Tag"] == "a, b"


@pytest.mark.parametrize("code", [429, 503])
async def test_retry_after_seconds(runner: HttpRunner, target: Target, code: int) -> None:
    outcome = await runner.run(make_job(target.url(f"/status/{code}", retry_after=7)), 1, 5)
    assert (outcome.ok, outcome.error, outcome.retry_after) == (False, f"HTTP {code}", 7.0)


async def test_retry_after_http_date(runner: HttpRunner, target: Target) -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    outcome = await runner.run(make_job(target.url("/status/503", retry_after=when)), 1, 5)
    assert outcome.retry_after is not None
    assert 25 <= outcome.retry_after <= 31


@pytest.mark.parametrize(("path", "retry_after"), [("/status/500", "5"), ("/status/429", "soon"), ("/status/429", "")])
async def test_retry_after_ignored(runner: HttpRunner, target: Target, path: str, retry_after: str) -> None:
    outcome = await runner.run(make_job(target.url(path, retry_after=retry_after)), 1, 5)
    assert outcome.retry_after is None


async def test_connection_refused(runner: HttpRunner) -> None:
    port = closed_port()
    outcome = await runner.run(make_job(f"http://user:hunter2@127.0.0.1:{port}/x?token=abc"), 1, 5)
    assert (outcome.ok, outcome.final) == (False, False)
    assert outcome.error == f"connection refused by 127.0.0.1:{port}"


async def test_unknown_host(runner: HttpRunner) -> None:
    outcome = await runner.run(make_job("http://no-such-host.invalid/x"), 1, 5)  # .invalid never resolves (RFC 6761)
    assert (outcome.ok, outcome.final, outcome.error) == (False, False, "could not resolve host no-such-host.invalid")


async def test_tls_error(runner: HttpRunner, target: Target) -> None:
    outcome = await runner.run(make_job(f"https://127.0.0.1:{target.port}/echo"), 1, 5)  # a plain HTTP server
    assert (outcome.ok, outcome.final) == (False, False)
    assert (outcome.error or "").startswith(f"TLS error with 127.0.0.1:{target.port}: ")


@pytest.mark.parametrize("method", [Method.GET, Method.POST])
async def test_invalid_url_fails_for_good_without_credentials(runner: HttpRunner, method: Method) -> None:
    outcome = await runner.run(
        make_job("http://me:hunter2@127.0.0.1:99999/", method, "a=1" if method == "GET" else None), 1, 5
    )
    assert (outcome.ok, outcome.final, outcome.error) == (False, True, "name is not a valid URL")


async def test_redirect_to_another_scheme_is_refused_without_credentials(runner: HttpRunner, target: Target) -> None:
    outcome = await runner.run(make_job(target.url("/redirect", to="ftp://me:hunter2@files.example/a")), 1, 5)
    assert (outcome.ok, outcome.final) == (False, True)
    assert outcome.error == "ftp://files.example/a is not an http or https URL"


def test_redact() -> None:
    assert redact("https://user:pw@example.com:8443/a?b=1") == "https://example.com:8443/a?b=1"
    assert redact("http://example.com/") == "http://example.com/"


async def test_one_shared_pool_runs_calls_in_parallel(target: Target) -> None:
    runner = HttpRunner(pool_size=3)
    try:
        url = target.url("/slow", ms=200, key="pool")
        outcomes = await asyncio.gather(*(runner.run(make_job(url, id=f"p{i}"), 1, 5) for i in range(9)))
    finally:
        await runner.close()
    assert all(o.ok for o in outcomes)
    assert target.max_concurrency("pool") == 3
    assert target.count_by_job_id() == {f"p{i}": 1 for i in range(9)}


async def test_cookies_are_not_kept_between_jobs(runner: HttpRunner, target: Target) -> None:
    url = target.url("/status/200") + "?header=Set-Cookie:session=abc"
    await runner.run(make_job(url), 1, 5)
    echo = echoed(await runner.run(make_job(target.url("/echo")), 1, 5))
    assert "Cookie" not in echo["headers"]


async def test_flaky_target_and_attempt_numbers(runner: HttpRunner, target: Target) -> None:
    url = target.url("/flaky/k1", fail=2)
    outcomes = [await runner.run(make_job(url, id="flaky-1"), attempt, 5) for attempt in (1, 2, 3)]
    assert [o.error for o in outcomes] == ["HTTP 500", "HTTP 500", None]
    assert [c.attempt for c in target.calls_for("flaky-1")] == [1, 2, 3]
    assert target.count_by_job_id() == {"flaky-1": 3}


async def test_target_stops_promptly_with_a_request_in_flight() -> None:
    server = Target().start()
    runner = HttpRunner()
    try:
        assert (await runner.run(make_job(server.url("/never")), 1, 0.2)).error == "timed out after 0.2s"
        pending = asyncio.ensure_future(runner.run(make_job(server.url("/never")), 1, 10))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        await asyncio.to_thread(server.stop)
        assert time.monotonic() - started < 3
        assert not (await pending).ok  # the server went away under it
    finally:
        await runner.close()

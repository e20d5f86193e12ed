"""Traces: a job keeps the trace context it came with, each attempt is a span, and the targets continue the trace."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest
import websockets

from poulpe.job import Job, Method
from poulpe.runners.mail import build_message
from tests.conftest import copy_programs
from tests.e2e.helpers import accepted, result
from tests.otlp_collector import Collector
from tests.poulpe_process import Poulpe
from tests.started import Started
from tests.target import Target

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
QUICK_EXPORT = {"OTEL_BSP_SCHEDULE_DELAY": "100"}  # the SDK sends its batch every 0.1 s instead of every 5 s


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    """One collector for the module: each test looks for the spans of its own jobs."""
    with Collector() as running:
        yield running


@pytest.fixture(scope="module")
def traced(module_poulpe: Started[Poulpe], collector: Collector) -> Poulpe:
    """One tracing poulpe for the module, as a subprocess: OpenTelemetry's tracer provider is one per process."""
    exec_dir = copy_programs(module_poulpe.root / "bin")
    return module_poulpe("--otlp_endpoint", collector.url, "--exec_dir", str(exec_dir), env=QUICK_EXPORT)


def parts(traceparent: str) -> tuple[str, str]:
    """(trace id, parent span id) of a traceparent header."""
    version, trace_id, span_id, flags = traceparent.split("-")
    assert version == "00" and len(flags) == 2
    return trace_id, span_id


def test_an_http_job_continues_the_trace_of_its_request(traced: Poulpe, target: Target, collector: Collector) -> None:
    with traced.client() as client:
        answer = client.post(
            "/task_in_queue",
            json={"method": "GET", "name": target.url("/echo")},
            headers={"traceparent": TRACEPARENT, "tracestate": "vendor=abc"},
        )
        assert answer.status_code == 202, answer.text
        job_id = answer.json()["id"]
        assert result(client, job_id)["status"] == "succeeded"
    [call] = target.calls_for(job_id)
    trace_id, parent = parts(call.headers["traceparent"])
    assert trace_id == TRACE_ID and parent != PARENT_ID  # the same trace, under the attempt's span
    assert call.headers["tracestate"] == "vendor=abc"
    [span] = collector.wait_for(job_id)
    assert (span.trace_id, span.span_id, span.parent_span_id) == (TRACE_ID, parent, PARENT_ID)
    assert span.name == "poulpe GET"
    assert span.attributes["poulpe.attempt"] == 1
    assert span.attributes["poulpe.outcome"] == "succeeded"
    assert span.resource["service.name"] == "poulpe"


def test_a_retried_job_gives_one_span_per_attempt(traced: Poulpe, target: Target, collector: Collector) -> None:
    with traced.client() as client:
        job = accepted(
            client,
            method="GET",
            name=target.url("/status/500"),
            retry={"max": 1, "interval": 0},
            key="billing",
            traceparent=TRACEPARENT,
        )
        assert result(client, job["id"])["status"] == "dead"
    first, second = collector.wait_for(job["id"], count=2)
    assert [first.attributes["poulpe.attempt"], second.attributes["poulpe.attempt"]] == [1, 2]
    assert [first.attributes["poulpe.status"], second.attributes["poulpe.status"]] == ["retrying", "dead"]
    for span in (first, second):
        assert span.trace_id == TRACE_ID and span.parent_span_id == PARENT_ID
        assert span.attributes["poulpe.outcome"] == "failed" and span.attributes["poulpe.key"] == "billing"
        assert span.status_code == 2  # error
    assert first.span_id != second.span_id
    assert len(collector.spans_of_job(job["id"])) == 2


def test_a_caller_that_did_not_sample_gets_no_span_and_its_flag_passed_on(
    traced: Poulpe, target: Target, collector: Collector
) -> None:
    with traced.client() as client:
        unsampled = accepted(client, method="GET", name=target.url("/echo"), traceparent=TRACEPARENT[:-2] + "00")
        result(client, unsampled["id"])
        sampled = accepted(client, method="GET", name=target.url("/echo"), traceparent=TRACEPARENT)
        result(client, sampled["id"])
    trace_id, parent = parts(target.calls_for(unsampled["id"])[0].headers["traceparent"])
    assert trace_id == TRACE_ID and parent != PARENT_ID
    assert target.calls_for(unsampled["id"])[0].headers["traceparent"].endswith("-00")
    collector.wait_for(sampled["id"])  # ended after the other's span would have been
    assert collector.spans_of_job(unsampled["id"]) == []


def test_a_job_without_trace_context_starts_its_own_trace(traced: Poulpe, target: Target, collector: Collector) -> None:
    with traced.client() as client:
        job = accepted(client, method="GET", name=target.url("/echo"))
        result(client, job["id"])
    [call] = target.calls_for(job["id"])
    trace_id, parent = parts(call.headers["traceparent"])
    [span] = collector.wait_for(job["id"])
    assert (span.trace_id, span.span_id, span.parent_span_id) == (trace_id, parent, "")


async def test_a_websocket_job_carries_its_traceparent_field(
    traced: Poulpe, target: Target, collector: Collector
) -> None:
    async with websockets.connect(traced.url.replace("http://", "ws://") + "/ws_task") as ws:
        await ws.send(json.dumps({"method": "GET", "name": target.url("/echo"), "traceparent": TRACEPARENT}))
        ack = json.loads(await ws.recv())
        assert ack["type"] == "ack", ack
        done = json.loads(await ws.recv())
        assert done["type"] == "result" and done["status"] == "succeeded", done
    [call] = target.calls_for(ack["id"])
    trace_id, parent = parts(call.headers["traceparent"])
    assert trace_id == TRACE_ID and parent != PARENT_ID
    [span] = collector.wait_for(ack["id"])
    assert span.span_id == parent and span.parent_span_id == PARENT_ID


async def test_a_websocket_job_takes_the_trace_of_the_upgrade_request(
    traced: Poulpe, target: Target, collector: Collector
) -> None:
    url = traced.url.replace("http://", "ws://") + "/ws_task"
    async with websockets.connect(url, additional_headers={"traceparent": TRACEPARENT}) as ws:
        await ws.send(json.dumps([{"method": "GET", "name": target.url("/echo")}] * 2))
        acks = [json.loads(await ws.recv()) for _ in range(2)]
        assert [ack["type"] for ack in acks] == ["ack", "ack"], acks
        for _ in range(2):
            assert json.loads(await ws.recv())["status"] == "succeeded"
    for ack in acks:
        [call] = target.calls_for(ack["id"])
        trace_id, parent = parts(call.headers["traceparent"])
        assert trace_id == TRACE_ID and parent != PARENT_ID
        [span] = collector.wait_for(ack["id"])
        assert span.span_id == parent and span.parent_span_id == PARENT_ID


def test_a_queue_job_gives_a_span_per_attempt_from_lease_to_report(traced: Poulpe, collector: Collector) -> None:
    with traced.client() as client:
        job = accepted(client, method="QUEUE", name="thumb", retry={"max": 2, "interval": 0}, traceparent=TRACEPARENT)
        for n in range(3):  # a failure reported, a lease that ends without a report, then a success
            [leased] = client.post("/workers/thumb/lease", json={"worker": "w1", "lease_s": 0.3, "wait": 10}).json()[
                "jobs"
            ]
            assert (leased["id"], leased["attempt"]) == (job["id"], n + 1)
            if n == 0:
                assert client.post(f"/jobs/{job['id']}/fail", json={"worker": "w1", "error": "no disk"}).is_success
            elif n == 2:
                assert client.post(f"/jobs/{job['id']}/complete", json={"worker": "w1"}).is_success
        assert result(client, job["id"])["status"] == "succeeded"
    spans = collector.wait_for(job["id"], count=3)
    assert [s.attributes["poulpe.attempt"] for s in spans] == [1, 2, 3]
    assert [s.attributes["poulpe.outcome"] for s in spans] == ["failed", "failed", "succeeded"]
    assert [s.attributes["poulpe.status"] for s in spans] == ["retrying", "retrying", "succeeded"]
    for span in spans:
        assert (span.name, span.trace_id, span.parent_span_id) == ("poulpe QUEUE", TRACE_ID, PARENT_ID)
    assert spans[1].duration_s >= 0.25  # the lease it held, from the lease to its end
    assert spans[0].status_code == 2 and spans[2].status_code == 0


def test_an_exec_program_gets_the_trace_in_its_environment(traced: Poulpe, collector: Collector) -> None:
    with traced.client() as client:
        job = accepted(client, method="EXEC", name="showenv", traceparent=TRACEPARENT)
        done = result(client, job["id"])
    env = dict(line.split("=", 1) for line in done["result"]["stdout"].splitlines() if "=" in line)
    trace_id, parent = parts(env["TRACEPARENT"])
    assert trace_id == TRACE_ID
    [span] = collector.wait_for(job["id"])
    assert span.span_id == parent and span.name == "poulpe EXEC"


def test_a_bad_traceparent_field_is_refused_and_a_bad_header_ignored(traced: Poulpe, target: Target) -> None:
    with traced.client() as client:
        answer = client.post("/task_in_queue", json={"method": "GET", "name": target.url(), "traceparent": "00-xyz"})
        assert answer.status_code == 400 and answer.json()["field"] == "traceparent"
        answer = client.post(
            "/task_in_queue", json={"method": "GET", "name": target.url()}, headers={"traceparent": "garbage"}
        )
        assert answer.status_code == 202
        result(client, answer.json()["id"])
    [call] = target.calls_for(answer.json()["id"])
    assert parts(call.headers["traceparent"])[0] != "garbage"  # a trace of its own


def test_with_tracing_off_the_jobs_context_is_passed_on_as_it_came(
    poulpe: Callable[..., Poulpe], target: Target
) -> None:
    proc = poulpe()
    with proc.client() as client:
        with_trace = accepted(client, method="GET", name=target.url(), traceparent=TRACEPARENT)
        without = accepted(client, method="GET", name=target.url())
        result(client, with_trace["id"])
        result(client, without["id"])
    assert target.calls_for(with_trace["id"])[0].headers["traceparent"] == TRACEPARENT
    assert "traceparent" not in target.calls_for(without["id"])[0].headers


def test_with_tracing_off_opentelemetry_is_never_imported() -> None:
    code = (
        "import sys, poulpe.app, poulpe.workers, poulpe.runners.http, poulpe.runners.exec, poulpe.intake.kafka;"
        "from poulpe.settings import Settings;"
        "poulpe.app.create_app(Settings());"
        "assert not [m for m in sys.modules if m.startswith('opentelemetry')], 'loaded'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={"PATH": "/usr/bin:/bin"})


def test_a_mail_carries_the_jobs_trace_in_its_headers() -> None:
    job = Job(id="m1", method=Method.MAIL_TO, name="ann@example.com", traceparent=TRACEPARENT, tracestate="v=1")
    params = {"from_addr": "shop@example.com", "title": "hi", "body": "hello"}
    message, _, _ = build_message(job, params)
    assert message["Traceparent"] == TRACEPARENT and message["Tracestate"] == "v=1"
    assert build_message(Job(id="m2", method=Method.MAIL_TO, name="ann@example.com"), params)[0]["Traceparent"] is None

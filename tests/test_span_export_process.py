"""Attempt spans leave poulpe's process for its span export process: none lost on a normal stop, a dead export
process replaced, and the export process never outlives poulpe's stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from poulpe import tracing
from poulpe.job import Job, Method, Status
from poulpe.runners import Outcome
from poulpe.tracing_otel import AttemptSpans
from tests.otlp_collector import Collector

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
def collector() -> Iterator[Collector]:
    with Collector() as running:
        yield running


def attempt(spans: AttemptSpans, job_id: str, ok: bool = True) -> None:
    """One attempt of an HTTP job, begun and ended as the workers do."""
    job = Job(id=job_id, method=Method.GET, name="http://127.0.0.1:9/", traceparent=TRACEPARENT, attempts=1)
    begun = spans.begin(job)
    job.status = Status.SUCCEEDED if ok else Status.DEAD
    spans.end(begun, job, Outcome(ok=ok, error=None if ok else "HTTP 500"))


def wait_until(condition: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.05)


def ignored_signals(pid: int) -> set[int]:
    """The signals a process ignores, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            mask = int(line.split()[1], 16)
            return {n for n in range(1, 64) if mask & (1 << (n - 1))}
    return set()


def test_every_span_ended_before_a_normal_stop_reaches_the_collector(collector: Collector) -> None:
    # the SDK's default schedule (a batch every 5 s): only the stop sends these
    spans = AttemptSpans(f"{collector.url}/v1/traces", node="node-1", version="1.0")
    for n in range(1500):
        attempt(spans, f"job-{n}", ok=n % 3 != 0)
    export = spans.pipe.pid
    spans.close()
    received = collector.spans
    assert len(received) == 1500
    assert {s.attributes["poulpe.job.id"] for s in received} == {f"job-{n}" for n in range(1500)}
    failed = next(s for s in received if s.attributes["poulpe.job.id"] == "job-0")
    assert failed.status_code == 2 and failed.attributes["poulpe.outcome"] == "failed"
    assert failed.resource["service.instance.id"] == "node-1"
    assert export is not None and not os.path.exists(f"/proc/{export}")  # the export process has ended


def test_an_attempt_passes_on_its_own_span_under_the_jobs_trace_with_the_sampled_flag_only(
    collector: Collector,
) -> None:
    spans = AttemptSpans(f"{collector.url}/v1/traces", node="node-1", version="1.0")
    trace_id, parent_id = TRACEPARENT[3:35], TRACEPARENT[36:52]
    try:
        for flags, passed in (("01", "01"), ("03", "01"), ("02", "00"), ("00", "00")):
            job = Job(id=f"job-{flags}", method=Method.GET, name="http://127.0.0.1:9/", attempts=1)
            job.traceparent = f"00-{trace_id}-{parent_id}-{flags}"
            begun = spans.begin(job)
            version, trace, span, sent_flags = tracing.outgoing(job)[0].split("-")  # type: ignore[index]
            assert (version, trace, sent_flags) == ("00", trace_id, passed)
            assert span != parent_id and len(span) == 16 and int(span, 16)
            spans.end(begun, job, Outcome(ok=True))
            assert tracing.outgoing(job) == (job.traceparent, None)  # the attempt's context is over
        root = Job(id="root", method=Method.GET, name="http://127.0.0.1:9/", attempts=1)
        begun = spans.begin(root)
        version, trace, span, flags = tracing.outgoing(root)[0].split("-")  # type: ignore[index]
        spans.end(begun, root, Outcome(ok=True))
        assert (version, len(trace), len(span), flags) == ("00", 32, 16, "01") and int(trace, 16) and int(span, 16)
        collector.wait_for("job-03")
        [span_03] = collector.spans_of_job("job-03")
        assert (span_03.trace_id, span_03.parent_span_id) == (trace_id, parent_id)
        assert collector.spans_of_job("job-02") == []  # not sampled by the caller
    finally:
        spans.close()


def test_attempts_running_at_once_each_pass_on_their_own_span(collector: Collector) -> None:
    """Two workers run attempts of two jobs of one trace at the same time: each runner passes on its own attempt's
    span, and the end of one attempt leaves the other's context in place."""
    spans = AttemptSpans(f"{collector.url}/v1/traces", node="node-1", version="1.0")
    try:
        first, second = (
            Job(id=name, method=Method.GET, name="http://127.0.0.1:9/", traceparent=TRACEPARENT, attempts=1)
            for name in ("first", "second")
        )
        began_first, began_second = spans.begin(first), spans.begin(second)
        passed_first, passed_second = tracing.outgoing(first), tracing.outgoing(second)
        assert passed_first is not None and passed_second is not None
        assert passed_first[0] == began_first[1] and passed_second[0] == began_second[1]
        assert passed_first[0] != passed_second[0]
        spans.end(began_first, first, Outcome(ok=True))
        assert tracing.outgoing(first) == (TRACEPARENT, None)
        assert tracing.outgoing(second) == passed_second
        spans.end(began_second, second, Outcome(ok=True))
        assert tracing.outgoing(second) == (TRACEPARENT, None)
    finally:
        spans.close()


def test_an_export_process_that_dies_is_replaced(collector: Collector, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    spans = AttemptSpans(f"{collector.url}/v1/traces", node="node-1", version="1.0")
    try:
        attempt(spans, "before")
        collector.wait_for("before")
        first = spans.pipe.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: spans.pipe.pid != first)  # replaced even with no span to send
        attempt(spans, "after")
        collector.wait_for("after")
        assert spans.pipe.restarts == 1
    finally:
        spans.close()


def test_spans_ended_while_the_export_process_is_dead_still_arrive(
    collector: Collector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    spans = AttemptSpans(f"{collector.url}/v1/traces", node="node-1", version="1.0")
    try:
        first = spans.pipe.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        attempt(spans, "meanwhile")  # likely handed on before the pipe sees the death: written to the next one
        collector.wait_for("meanwhile")
    finally:
        spans.close()


def test_the_export_process_ignores_a_signal_to_poulpes_process_group(
    collector: Collector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C in a terminal reaches the whole group: the export process waits for poulpe's stop to send the rest."""
    spans = AttemptSpans(f"{collector.url}/v1/traces", node="node-1", version="1.0")
    export = spans.pipe.pid
    assert export is not None
    wait_until(lambda: ignored_signals(export) >= {signal.SIGINT, signal.SIGTERM})  # once it has started
    os.kill(export, signal.SIGINT)
    os.kill(export, signal.SIGTERM)
    attempt(spans, "after-signal")
    spans.close()
    assert [s.attributes["poulpe.job.id"] for s in collector.spans] == ["after-signal"]


def test_the_export_process_takes_its_turn_on_the_cpu_instead_of_preempting_poulpe(collector: Collector) -> None:
    spans = AttemptSpans(f"{collector.url}/v1/traces", node="node-1", version="1.0")
    export = spans.pipe.pid
    assert export is not None
    try:
        wait_until(lambda: os.sched_getscheduler(export) == os.SCHED_BATCH)  # once it has started
        attempt(spans, "batch")
        collector.wait_for("batch")
        threads = list(Path(f"/proc/{export}/task").iterdir())
        assert len(threads) > 1  # the SDK's export thread as well
        assert all(os.sched_getscheduler(int(thread.name)) == os.SCHED_BATCH for thread in threads)
    finally:
        spans.close()


def test_the_export_process_sends_what_it_has_and_ends_when_poulpe_is_killed(collector: Collector) -> None:
    code = (
        "import sys, time;"
        "from tests.test_span_export_process import attempt;"
        "from poulpe.tracing_otel import AttemptSpans;"
        f"spans = AttemptSpans('{collector.url}/v1/traces', node='n', version='1');"
        "attempt(spans, 'killed');"
        "print(spans.pipe.pid, flush=True);"
        "time.sleep(60)"
    )
    poulpe = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert poulpe.stdout is not None
        export = int(poulpe.stdout.readline())
        time.sleep(1.0)  # the span is handed on (every 0.2 s)
    finally:
        poulpe.kill()
        poulpe.wait()
        poulpe.stdout.close()  # type: ignore[union-attr]
    collector.wait_for("killed")  # the SDK's 5 s schedule not waited for: the export process's input ended
    wait_until(lambda: not Path(f"/proc/{export}").exists() or "Z" in Path(f"/proc/{export}/stat").read_text())


def test_a_stop_is_bounded_when_the_export_process_reads_no_more(
    collector: Collector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("poulpe.span_pipe.STOP_WAIT", 1.0)
    spans = AttemptSpans(f"{collector.url}/v1/traces", node="node-1", version="1.0")
    export = spans.pipe.pid
    assert export is not None
    os.kill(export, signal.SIGSTOP)  # alive, reading nothing: the pipe fills and the write blocks
    for n in range(3000):
        attempt(spans, f"job-{n}")
    started = time.monotonic()
    spans.close()
    assert time.monotonic() - started < 15
    assert not Path(f"/proc/{export}").exists() or "Z" in Path(f"/proc/{export}/stat").read_text()

"""Trace context (W3C `traceparent`/`tracestate`) kept with a job and passed on by its attempts (SPEC 10.6).

This module never imports OpenTelemetry: it only reads the context at intake and tells the runners what to pass
on. The spans and their export live in tracing_otel.py, imported only when tracing is on (--otlp_endpoint), so
with tracing off nothing of OpenTelemetry loads or runs on a job's path.

What an attempt passes on (HTTP `traceparent` header, EXEC `TRACEPARENT`, mail `Traceparent`): with tracing on,
the attempt span's own context (the job's trace id, the span's id); with tracing off, the job's context as it came
in, unchanged (what OpenTelemetry's API does without an SDK), so the trace stays whole for the targets that record.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from poulpe.job import Job
    from poulpe.runners import Outcome

# The shape a job's `traceparent` field must have (400 otherwise); the wire schema says the same.
TRACEPARENT_PATTERN = r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"
# What W3C Trace Context also rules out: version ff, an all-zero trace or parent id. Such a context is ignored (the
# job starts a trace of its own), from a header or a field alike.
TRACEPARENT_RE = re.compile(r"^(?!ff)[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$")
MAX_TRACESTATE = 512  # W3C: 32 list members; longer values may be dropped

# The context each running attempt passes on, by job id, set by the attempt span (tracing on) for the runner it
# calls (a job has one attempt at a time in a process). Not a ContextVar: setting one in a worker's task cost the
# event loop about 7 % of HTTP-call jobs/s (bench/notes.md, "Tracing on: the ContextVar"), a dict entry nothing.
_attempts: dict[str, tuple[str, str | None]] = {}


class Spans(Protocol):
    """An attempt's span (tracing_otel.AttemptSpans): begun before the runner runs, ended once the outcome is
    decided (`outcome` None: the attempt was cut short by a shutdown); a QUEUE job's attempt (`external`) spans
    its lease to its worker's report or the lease's end."""

    def begin(self, job: Job) -> Any: ...

    def end(self, span: Any, job: Job, outcome: Outcome | None) -> None: ...

    def external(self, job: Job, outcome: Outcome) -> None: ...

    def close(self) -> None: ...


def valid_traceparent(value: str | None) -> str | None:
    """The value when it is a well-formed `traceparent`, else None (a bad header is ignored, as W3C says)."""
    if value is None:
        return None
    value = value.strip()
    return value if len(value) <= 256 and TRACEPARENT_RE.match(value) else None


def from_headers(headers: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(traceparent, tracestate) of a request's headers; the state only goes with a valid parent."""
    parent = valid_traceparent(headers.get("traceparent"))
    state = headers.get("tracestate") if parent else None
    return parent, state[:MAX_TRACESTATE] if state else None


def from_record_headers(headers: Iterable[tuple[str, bytes]] | None) -> tuple[str | None, str | None]:
    """(traceparent, tracestate) of a Kafka record's headers (values are bytes)."""
    found: dict[str, str] = {}
    for name, value in headers or ():
        low = name.lower()
        if low in ("traceparent", "tracestate") and value is not None:
            found[low] = bytes(value).decode("latin-1")
    return from_headers(found)


def adopt(jobs: Iterable[Job], parent: str | None, state: str | None) -> None:
    """Jobs without a `traceparent` field of their own take the intake's (a header's) context."""
    if parent is None:
        return
    for job in jobs:
        if job.traceparent is None:
            job.traceparent, job.tracestate = parent, state


def outgoing(job: Job) -> tuple[str, str | None] | None:
    """(traceparent, tracestate) the running attempt passes on, or None when the job has no trace."""
    current = _attempts.get(job.id)
    if current is not None:
        return current
    return (job.traceparent, job.tracestate) if job.traceparent else None


def set_attempt(job_id: str, context: tuple[str, str | None] | None) -> None:
    """The running attempt's context (None: the attempt is over)."""
    if context is None:
        _attempts.pop(job_id, None)
    else:
        _attempts[job_id] = context


def endpoint(flag: str | None, environ: Mapping[str, str] = os.environ) -> str | None:
    """The OTLP/HTTP traces URL: --otlp_endpoint, else OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (used as is), else
    OTEL_EXPORTER_OTLP_ENDPOINT; a base URL gets `/v1/traces`, as OpenTelemetry's own variables mean it."""
    if flag:
        return _traces_url(flag)
    exact = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if exact:
        return exact
    base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    return _traces_url(base) if base else None


def _traces_url(base: str) -> str:
    base = base.strip()
    return base if base.rstrip("/").endswith("/v1/traces") else base.rstrip("/") + "/v1/traces"

"""One OpenTelemetry span per attempt, exported over OTLP/HTTP by OpenTelemetry's own SDK (SPEC 10.6).

Imported only when tracing is on (--otlp_endpoint or OTEL_EXPORTER_OTLP_ENDPOINT). The attempt's ids are drawn by
the SDK's id generator and the `traceparent` passed on written from them when the attempt begins; once it has
ended, its ids, times and attributes go as one tuple to poulpe's span export process (span_pipe.py), where the
SDK builds the span and its batch processor and OTLP exporter encode and send it (span_export.py), away from the
GIL of this process's event loop. Measured (bench/traces.py, docs/BENCHMARKS.md): a span started and ended through
the SDK's Tracer costs the event loop about 34 µs of CPU; begun and handed on this way, a few. The sampling is the
SDK's default (parent-based, always on): a parent not sampled gives no span. A collector that is down costs
dropped spans (the SDK's bounded queue), never a job.
"""

from __future__ import annotations

import logging
import time
from typing import NamedTuple

from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

from poulpe import tracing
from poulpe.job import Job
from poulpe.runners import Outcome
from poulpe.span_pipe import SpanPipe

log = logging.getLogger(__name__)
SAMPLED = 0x01


class Begun(NamedTuple):
    """An attempt's span as it begins: its ids, its parent's span id (0: none), its flags, its start."""

    start_ns: int
    trace_id: int
    span_id: int
    parent_id: int
    flags: int


class AttemptSpans:
    """A job attempt's span: begun (ids drawn, context passed on) before the runner runs, exported when the outcome
    is decided; a QUEUE job's attempt is exported when its worker reports (or its lease ends)."""

    def __init__(self, endpoint: str, *, node: str, version: str) -> None:
        self.ids = RandomIdGenerator()
        self.pipe = SpanPipe(endpoint, node=node, version=version)
        log.info("tracing on: spans go to %s", endpoint)

    def begin(self, job: Job) -> Begun:
        """Draw the attempt's span id under the job's trace; what the runner passes on is its context."""
        begun = self._begun(job, time.time_ns())
        # W3C traceparent, version 00, written from the ids (no propagator, no context attach)
        traceparent = f"00-{begun.trace_id:032x}-{begun.span_id:016x}-{begun.flags:02x}"
        tracing.set_attempt((traceparent, job.tracestate))
        return begun

    def end(self, span: Begun, job: Job, outcome: Outcome | None) -> None:
        """Export the span with the outcome (`succeeded`, `failed` or `interrupted`) and the job's next status."""
        tracing.set_attempt(None)
        self._export(job, span, time.time_ns(), outcome)

    def external(self, job: Job, outcome: Outcome) -> None:
        """A QUEUE job's attempt, from its lease to its worker's report or its lease's end (the job's last
        attempt in its history), ended by `outcome`."""
        if not job.history:
            return
        attempt = job.history[-1]
        end = attempt.finished_at or time.time()
        self._export(job, self._begun(job, int(attempt.started_at * 1e9)), int(end * 1e9), outcome)

    def close(self) -> None:
        """Send what is left (bounded by the SDK's export timeout), then stop the export process."""
        self.pipe.close()

    def _begun(self, job: Job, start_ns: int) -> Begun:
        span_id = self.ids.generate_span_id()
        if job.traceparent is None:
            return Begun(start_ns, self.ids.generate_trace_id(), span_id, 0, SAMPLED)
        # checked at intake (tracing.valid_traceparent): the propagator's parse is not needed
        _, trace_id, parent_id, flags = job.traceparent.split("-")
        return Begun(start_ns, int(trace_id, 16), span_id, int(parent_id, 16), int(flags, 16) & SAMPLED)

    def _export(self, job: Job, begun: Begun, end_ns: int, outcome: Outcome | None) -> None:
        if not begun.flags & SAMPLED:  # the parent-based sampler's decision: the caller did not sample
            return
        attributes: dict[str, str | int] = {
            "poulpe.job.id": job.id,
            "poulpe.attempt": job.attempts,
            "poulpe.outcome": "interrupted" if outcome is None else "succeeded" if outcome.ok else "failed",
            "poulpe.status": str(job.status),
        }
        if job.key is not None:
            attributes["poulpe.key"] = job.key
        error = None if outcome is None or outcome.ok else outcome.error or "failed"
        self.pipe.send(
            (
                begun.trace_id,
                begun.span_id,
                begun.parent_id,
                begun.flags,
                job.tracestate,
                f"poulpe {job.method}",
                begun.start_ns,
                end_ns,
                attributes,
                error,
            )
        )

"""One OpenTelemetry span per attempt, exported over OTLP/HTTP by OpenTelemetry's own SDK (SPEC 10.6).

Imported only when tracing is on (--otlp_endpoint or OTEL_EXPORTER_OTLP_ENDPOINT). The span is built once the
attempt has ended, in one call with its start and end times and all its attributes, and handed to the SDK's batch
processor, whose thread encodes and sends it. The ids are drawn and the `traceparent` passed on written when the
attempt begins. Measured (bench/traces.py, docs/BENCHMARKS.md): a span started and ended through the SDK's Tracer
(its sampler, its bounded attributes, its locks) costs the event loop about 34 µs of CPU; begun and built this
way, about 8 µs. The sampling is the SDK's default (parent-based, always on): a parent not sampled gives no span.
A collector that is down costs dropped spans (the SDK's bounded queue), never a job.
"""

from __future__ import annotations

import logging
import time
from typing import NamedTuple

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from poulpe import tracing
from poulpe.job import Job
from poulpe.runners import Outcome

log = logging.getLogger(__name__)
SAMPLED = TraceFlags(TraceFlags.SAMPLED)
UNSET = Status(StatusCode.UNSET)


class _Resource(Resource):
    """poulpe's resource, hashed once: the OTLP encoder groups spans by resource, hashing it (a JSON dump of its
    attributes) for every span it encodes."""

    _hash: int | None = None

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = super().__hash__()
        return self._hash


class Begun(NamedTuple):
    """An attempt's span as it begins: its ids and its parent (the job's context), its start."""

    start_ns: int
    context: SpanContext
    parent: SpanContext | None


class AttemptSpans:
    """A job attempt's span: begun (ids drawn, context passed on) before the runner runs, built and exported when
    the outcome is decided; a QUEUE job's attempt is built when its worker reports (or its lease ends)."""

    def __init__(self, endpoint: str, *, node: str, version: str) -> None:
        base = Resource.create({"service.name": "poulpe", "service.version": version, "service.instance.id": node})
        self.resource = _Resource(base.attributes, base.schema_url)
        self.ids = RandomIdGenerator()
        self.scope = InstrumentationScope("poulpe", version)
        # the SDK's defaults, or the OTEL_BSP_* variables (queue size, batch size, schedule delay)
        self.processor = BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint))
        log.info("tracing on: spans go to %s", endpoint)

    def begin(self, job: Job) -> Begun:
        """Draw the attempt's span id under the job's trace; what the runner passes on is its context."""
        begun = self._begun(job, time.time_ns())
        ctx = begun.context
        # W3C traceparent, version 00, written from the ids (no propagator, no context attach)
        traceparent = f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"
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
        """Send what is left (bounded by the SDK's export timeout), then stop the export thread."""
        self.processor.shutdown()  # type: ignore[no-untyped-call]

    def _begun(self, job: Job, start_ns: int) -> Begun:
        span_id = self.ids.generate_span_id()
        if job.traceparent is None:
            return Begun(start_ns, SpanContext(self.ids.generate_trace_id(), span_id, False, SAMPLED), None)
        # checked at intake (tracing.valid_traceparent): the propagator's parse is not needed
        _, trace_id, parent_id, flags = job.traceparent.split("-")
        trace_flags = TraceFlags(int(flags, 16) & TraceFlags.SAMPLED)
        state = TraceState.from_header([job.tracestate]) if job.tracestate else None
        parent = SpanContext(int(trace_id, 16), int(parent_id, 16), True, trace_flags, state)
        return Begun(start_ns, SpanContext(parent.trace_id, span_id, False, trace_flags, state), parent)

    def _export(self, job: Job, begun: Begun, end_ns: int, outcome: Outcome | None) -> None:
        if not begun.context.trace_flags.sampled:  # the parent-based sampler's decision: the caller did not sample
            return
        attributes: dict[str, str | int] = {
            "poulpe.job.id": job.id,
            "poulpe.attempt": job.attempts,
            "poulpe.outcome": "interrupted" if outcome is None else "succeeded" if outcome.ok else "failed",
            "poulpe.status": str(job.status),
        }
        if job.key is not None:
            attributes["poulpe.key"] = job.key
        failed = outcome is not None and not outcome.ok
        span = ReadableSpan(
            f"poulpe {job.method}",
            begun.context,
            begun.parent,
            self.resource,
            attributes,
            kind=SpanKind.CONSUMER,
            status=Status(StatusCode.ERROR, (outcome and outcome.error) or "failed") if failed else UNSET,
            start_time=begun.start_ns,
            end_time=end_ns,
            instrumentation_scope=self.scope,
        )
        self.processor.on_end(span)

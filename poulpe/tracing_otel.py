"""One OpenTelemetry span per attempt, exported over OTLP/HTTP by OpenTelemetry's own SDK (SPEC 10.6).

Imported only when tracing is on (--otlp_endpoint or OTEL_EXPORTER_OTLP_ENDPOINT). Spans go through the SDK's
batch processor: its thread encodes and sends them, the job's path only starts and ends the span. A collector that
is down costs dropped spans (the SDK's bounded queue), never a job.
"""

from __future__ import annotations

import logging

from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)

from poulpe import tracing
from poulpe.job import Job
from poulpe.runners import Outcome

log = logging.getLogger(__name__)


class AttemptSpans:
    """Starts a job attempt's span under the job's trace context and ends it with the attempt's outcome."""

    def __init__(self, endpoint: str, *, node: str, version: str) -> None:
        resource = Resource.create({"service.name": "poulpe", "service.version": version, "service.instance.id": node})
        self.provider = TracerProvider(resource=resource)
        self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        self.tracer = self.provider.get_tracer("poulpe", version)
        log.info("tracing on: spans go to %s", endpoint)

    def begin(self, job: Job) -> Span:
        """The attempt's span, started now; what the runner passes on is its context (tracing.outgoing)."""
        parent: Context | None = None
        if job.traceparent:  # checked at intake (tracing.valid_traceparent): the propagator's parse is not needed
            _, trace_id, span_id, flags = job.traceparent.split("-")
            remote = SpanContext(
                int(trace_id, 16),
                int(span_id, 16),
                is_remote=True,
                trace_flags=TraceFlags(int(flags, 16)),
                trace_state=TraceState.from_header([job.tracestate]) if job.tracestate else None,
            )
            parent = set_span_in_context(NonRecordingSpan(remote))
        attributes: dict[str, str | int] = {"poulpe.job.id": job.id, "poulpe.attempt": job.attempts}
        if job.key is not None:
            attributes["poulpe.key"] = job.key
        span = self.tracer.start_span(
            f"poulpe {job.method}", context=parent, kind=SpanKind.CONSUMER, attributes=attributes
        )
        ctx = span.get_span_context()
        traceparent = f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"  # W3C, version 00
        tracing.set_attempt((traceparent, ctx.trace_state.to_header() or None if ctx.trace_state else None))
        return span

    def end(self, span: Span, job: Job, outcome: Outcome | None) -> None:
        """End the span with the outcome (`succeeded`, `failed` or `interrupted`) and the job's next status."""
        tracing.set_attempt(None)
        span.set_attribute(
            "poulpe.outcome", "interrupted" if outcome is None else "succeeded" if outcome.ok else "failed"
        )
        span.set_attribute("poulpe.status", str(job.status))
        if outcome is not None and not outcome.ok:
            span.set_status(StatusCode.ERROR, outcome.error or "failed")
        span.end()

    def close(self) -> None:
        """Send what is left (bounded by the SDK's export timeout), then stop the export thread."""
        self.provider.shutdown()

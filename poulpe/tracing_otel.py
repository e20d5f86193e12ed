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
from opentelemetry.trace import Span, SpanKind, StatusCode, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from poulpe import tracing
from poulpe.job import Job
from poulpe.runners import Outcome

log = logging.getLogger(__name__)
_PROPAGATOR = TraceContextTextMapPropagator()


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
        if job.traceparent:
            carrier = {"traceparent": job.traceparent}
            if job.tracestate:
                carrier["tracestate"] = job.tracestate
            parent = _PROPAGATOR.extract(carrier)
        attributes: dict[str, str | int] = {"poulpe.job.id": job.id, "poulpe.attempt": job.attempts}
        if job.key is not None:
            attributes["poulpe.key"] = job.key
        span = self.tracer.start_span(
            f"poulpe {job.method}", context=parent, kind=SpanKind.CONSUMER, attributes=attributes
        )
        carrier_out: dict[str, str] = {}
        _PROPAGATOR.inject(carrier_out, context=set_span_in_context(span))
        tracing.set_attempt((carrier_out["traceparent"], carrier_out.get("tracestate")))
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

"""poulpe's span export process: OpenTelemetry's SDK builds the attempt spans it is sent and its OTLP/HTTP exporter
sends them (SPEC 10.6).

    python -m poulpe.span_export ENDPOINT NODE VERSION

Started by span_pipe.SpanPipe (tracing on). It reads batches of finished attempts from stdin (a 4-byte big-endian
length, then a `marshal` list of span_pipe.Record tuples), builds each as the SDK's ReadableSpan and hands it to the
SDK's BatchSpanProcessor, whose thread encodes the protobuf and posts it: that work, about 20 µs a span, no longer
holds the GIL of poulpe's event loop. The OTEL_BSP_* and OTEL_EXPORTER_OTLP_* variables apply here as they would in
poulpe. At end of input (poulpe stopped, or died) the processor sends what it holds, bounded by the SDK's timeouts,
and the process ends; SIGINT and SIGTERM are ignored so that a signal sent to poulpe's process group does not cut
that last export short.
"""

from __future__ import annotations

import contextlib
import logging
import marshal
import os
import signal
import sys
from typing import BinaryIO

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

log = logging.getLogger("poulpe.span_export")
UNSET = Status(StatusCode.UNSET)
FLAGS = {flags: TraceFlags(flags) for flags in range(256)}


class _Resource(Resource):
    """poulpe's resource, hashed once: the OTLP encoder groups spans by resource, hashing it (a JSON dump of its
    attributes) for every span it encodes."""

    _hash: int | None = None

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = super().__hash__()
        return self._hash


class Builder:
    """Records to the SDK's spans, each in one call with its start, end and attributes."""

    def __init__(self, node: str, version: str) -> None:
        base = Resource.create({"service.name": "poulpe", "service.version": version, "service.instance.id": node})
        self.resource = _Resource(base.attributes, base.schema_url)
        self.scope = InstrumentationScope("poulpe", version)
        self._states: dict[str, TraceState] = {}

    def span(self, record: tuple[object, ...]) -> ReadableSpan:
        traceparent, parent, state, method, start_ns, end_ns, job_id, attempt, outcome, status, key, error = record
        assert isinstance(traceparent, str) and isinstance(job_id, str) and isinstance(attempt, int)
        # the attempt's traceparent is poulpe's own (version 00); the job's was checked at intake
        trace_id, span_id, flags = int(traceparent[3:35], 16), int(traceparent[36:52], 16), int(traceparent[53:55], 16)
        trace_state = self._state(state) if isinstance(state, str) and state else None
        trace_flags = FLAGS[flags]
        parent_context = (
            SpanContext(trace_id, int(parent[36:52], 16), True, trace_flags, trace_state)
            if isinstance(parent, str)
            else None
        )
        attributes: dict[str, str | int] = {
            "poulpe.job.id": job_id,
            "poulpe.attempt": attempt,
            "poulpe.outcome": str(outcome),
            "poulpe.status": str(status),
        }
        if isinstance(key, str):
            attributes["poulpe.key"] = key
        return ReadableSpan(
            f"poulpe {method}",
            SpanContext(trace_id, span_id, False, trace_flags, trace_state),
            parent_context,
            self.resource,
            attributes,
            kind=SpanKind.CONSUMER,
            status=UNSET if error is None else Status(StatusCode.ERROR, str(error)),
            start_time=start_ns,  # type: ignore[arg-type]
            end_time=end_ns,  # type: ignore[arg-type]
            instrumentation_scope=self.scope,
        )

    def _state(self, header: str) -> TraceState:
        """A job's `tracestate` (as it came in, checked for length at intake), parsed once per distinct value."""
        found = self._states.get(header)
        if found is None:
            if len(self._states) > 1000:
                self._states.clear()
            found = self._states[header] = TraceState.from_header([header])
        return found


def run(source: BinaryIO, builder: Builder, processor: SpanProcessor) -> int:
    """Hand every span of `source` to the processor until end of input; the number of spans read."""
    read = 0
    while len(head := source.read(4)) == 4:
        body = source.read(int.from_bytes(head, "big"))
        for record in marshal.loads(body):
            processor.on_end(builder.span(record))
            read += 1
    return read


def _yield_to_poulpe() -> None:
    """Linux's SCHED_BATCH: the same share of CPU as before, but waking on a batch of spans, this process does not
    preempt the one running on its core (poulpe's event loop, the target of its calls): it takes its turn."""
    with contextlib.suppress(AttributeError, OSError):  # not Linux, or refused: the normal policy stays
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))


def main(argv: list[str]) -> None:
    endpoint, node, version = argv
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _yield_to_poulpe()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    processor = BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint))
    try:
        run(sys.stdin.buffer, Builder(node, version), processor)
    finally:
        processor.shutdown()  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    main(sys.argv[1:])

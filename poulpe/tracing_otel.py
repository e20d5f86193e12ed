"""One OpenTelemetry span per attempt, exported over OTLP/HTTP by OpenTelemetry's own SDK (SPEC 10.6).

Imported only when tracing is on (--otlp_endpoint or OTEL_EXPORTER_OTLP_ENDPOINT). The attempt's span id is drawn
(as the SDK's RandomIdGenerator draws it) and the `traceparent` passed on written with it when the attempt begins;
once it has ended, that `traceparent`, the job's and the attempt's times and fields go as one flat tuple of strings
and ints to poulpe's span export process (span_pipe.py), where the ids are parsed, the SDK builds the span and its
batch processor and OTLP exporter encode and send it (span_export.py), away from the GIL of this process's event
loop. Measured (bench/traces.py, docs/BENCHMARKS.md): a span started and ended through the SDK's Tracer costs the
event loop about 34 µs of CPU; begun and handed on this way, about 1.5. The sampling is the SDK's default
(parent-based, always on): a parent not sampled gives no span. A collector that is down costs dropped spans (the
SDK's bounded queue), never a job.
"""

from __future__ import annotations

import logging
import random
import time

from poulpe import tracing
from poulpe.job import Job
from poulpe.runners import Outcome
from poulpe.span_pipe import SpanPipe

log = logging.getLogger(__name__)
SAMPLED_DIGITS = frozenset("13579bdf")  # a traceparent's last hex digit with the sampled flag (0x01) set


# An attempt's span as it begins: its start (ns) and the `traceparent` it passes on (its trace id, its span id, its
# flags), which is what the export process reads the ids from. A plain tuple: made once per attempt.
Begun = tuple[int, str]


def _new_id(bits: int) -> str:
    """A random non-zero id in hex, as OpenTelemetry's RandomIdGenerator draws it (a zero id is invalid)."""
    n = 0
    while not n:
        n = random.getrandbits(bits)
    return n.to_bytes(bits // 8, "big").hex()


class AttemptSpans:
    """A job attempt's span: begun (ids drawn, context passed on) before the runner runs, exported when the outcome
    is decided; a QUEUE job's attempt is exported when its worker reports (or its lease ends)."""

    def __init__(self, endpoint: str, *, node: str, version: str) -> None:
        self.pipe = SpanPipe(endpoint, node=node, version=version)
        log.info("tracing on: spans go to %s", endpoint)

    def begin(self, job: Job) -> Begun:
        """Draw the attempt's span id under the job's trace; what the runner passes on is its context."""
        begun = self._begun(job, time.time_ns())
        tracing.set_attempt(job.id, (begun[1], job.tracestate))
        return begun

    def end(self, span: Begun, job: Job, outcome: Outcome | None) -> None:
        """Export the span with the outcome (`succeeded`, `failed` or `interrupted`) and the job's next status."""
        tracing.set_attempt(job.id, None)
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

    @staticmethod
    def _begun(job: Job, start_ns: int) -> Begun:
        """W3C traceparent, version 00, written from the ids (no propagator, no context attach): the job's trace
        id and flags (checked at intake, tracing.valid_traceparent), else a new trace, sampled."""
        parent = job.traceparent
        if parent is None:
            return start_ns, f"00-{_new_id(128)}-{_new_id(64)}-01"
        flags = "-01" if parent[-1] in SAMPLED_DIGITS else "-00"
        return start_ns, f"00-{parent[3:36]}{_new_id(64)}{flags}"

    def _export(self, job: Job, begun: Begun, end_ns: int, outcome: Outcome | None) -> None:
        if begun[1][-1] != "1":  # the parent-based sampler's decision: the caller did not sample
            return
        self.pipe.send(
            (
                begun[1],
                job.traceparent,
                job.tracestate,
                str(job.method),
                begun[0],
                end_ns,
                job.id,
                job.attempts,
                "interrupted" if outcome is None else "succeeded" if outcome.ok else "failed",
                str(job.status),
                job.key,
                None if outcome is None or outcome.ok else outcome.error or "failed",
            )
        )

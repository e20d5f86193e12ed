"""An OTLP/HTTP trace collector for the tests: POST /v1/traces on a free loopback port, in its own thread.

It decodes what poulpe exports with OpenTelemetry's own protobuf classes (opentelemetry-proto), as a real
collector would, and keeps each span as a small record the tests can read.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


@dataclasses.dataclass(frozen=True)
class ReceivedSpan:
    name: str
    trace_id: str  # 32 hex digits, as in a traceparent
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    status_code: int  # 0 unset, 1 ok, 2 error
    duration_s: float = 0.0


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


class Collector:
    def __init__(self, *, count_only: bool = False) -> None:
        self.port = 0
        self.requests = 0
        self.count_only = count_only  # decode, then only count: a bench's collector should cost what a real one does
        self.counted = 0
        self._spans: list[ReceivedSpan] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    def spans_of_job(self, job_id: str) -> list[ReceivedSpan]:
        return [s for s in self.spans if s.attributes.get("poulpe.job.id") == job_id]

    def wait_for(self, job_id: str, count: int = 1, timeout: float = 30) -> list[ReceivedSpan]:
        """The job's spans once `count` have arrived (sorted by attempt); fails the test otherwise."""
        deadline = time.monotonic() + timeout
        while len(found := self.spans_of_job(job_id)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(found)} spans of job {job_id} after {timeout}s, wanted {count}")
            time.sleep(0.05)
        return sorted(found, key=lambda s: s.attributes["poulpe.attempt"])

    def __enter__(self) -> Collector:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), name="otlp-collector", daemon=True)
        self._thread.start()
        if not ready.wait(10) or not self.port:
            raise RuntimeError("the test OTLP collector did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def _serve(self, ready: threading.Event) -> None:
        loop = self._loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_post("/v1/traces", self._traces)
        app.router.add_get("/count", self._count)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        try:
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
            self.port = runner.addresses[0][1]
        finally:
            ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner.cleanup())
            loop.close()

    async def _count(self, request: web.Request) -> web.Response:
        return web.json_response({"spans": self.counted or len(self.spans), "requests": self.requests})

    async def _traces(self, request: web.Request) -> web.Response:
        export = ExportTraceServiceRequest()
        export.ParseFromString(await request.read())
        if self.count_only:
            self.counted += sum(len(s.spans) for r in export.resource_spans for s in r.scope_spans)
            return web.Response(
                body=ExportTraceServiceResponse().SerializeToString(), content_type="application/x-protobuf"
            )
        received = []
        for resource_spans in export.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        ReceivedSpan(
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            attributes={a.key: _value(a.value) for a in span.attributes},
                            resource=resource,
                            status_code=span.status.code,
                            duration_s=(span.end_time_unix_nano - span.start_time_unix_nano) / 1e9,
                        )
                    )
        with self._lock:
            self._spans.extend(received)
            self.requests += 1
        body = ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=body, content_type="application/x-protobuf")


if __name__ == "__main__":  # a collector of its own process (bench/traces.py): python -m tests.otlp_collector PORT
    import sys

    collector = Collector(count_only=True)
    collector.port = int(sys.argv[1])
    with collector:
        threading.Event().wait()

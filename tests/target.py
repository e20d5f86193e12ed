"""A real HTTP target for poulpe's tests: an aiohttp server on a free loopback port, in its own thread.

It runs its own event loop, so sync tests, async tests and a poulpe server under test can all call it.

    with Target() as target:
        url = target.url("/echo")
        ...
        assert target.count_by_job_id()["job-1"] == 1
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from multidict import CIMultiDict

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclasses.dataclass(frozen=True)
class Call:
    """One request the target received. `headers` looks names up case-insensitively."""

    method: str
    path: str
    query: dict[str, str]
    query_string: str
    headers: CIMultiDict[str]
    body: str
    at: float
    job_id: str | None
    attempt: int | None


class Target:
    def __init__(self) -> None:
        self.port = 0
        self._lock = threading.Lock()
        self._calls: list[Call] = []
        self._flaky: Counter[str] = Counter()
        self._inflight: Counter[str] = Counter()
        self._max: Counter[str] = Counter()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self._gates: dict[str, asyncio.Event] = {}  # /hold waits on them; only the target's loop touches them

    # --- lifecycle -----------------------------------------------------------------------------------------
    def start(self) -> Target:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), name="target", daemon=True)
        self._thread.start()
        if not ready.wait(10) or not self.port:
            raise RuntimeError("the test target did not start (see the thread's exception above)")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = self._thread = None

    def __enter__(self) -> Target:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self, ready: threading.Event) -> None:
        loop = self._loop = asyncio.new_event_loop()
        self._stopping = asyncio.Event()
        runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=1.0)
        try:
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
            self.port = runner.addresses[0][1]
        finally:
            ready.set()  # start() reports a failure instead of waiting for nothing
        try:
            loop.run_forever()
        finally:
            self._stopping.set()  # wakes /never so that shutdown does not wait for it
            loop.run_until_complete(runner.cleanup())
            loop.close()

    # --- what tests read -----------------------------------------------------------------------------------
    def url(self, path: str = "/echo", **query: Any) -> str:
        suffix = f"?{urlencode(query)}" if query else ""
        return f"http://127.0.0.1:{self.port}{path}{suffix}"

    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    def calls_for(self, job_id: str) -> list[Call]:
        return [call for call in self.calls if call.job_id == job_id]

    def count_by_job_id(self) -> Counter[str]:
        return Counter(call.job_id for call in self.calls if call.job_id is not None)

    def max_concurrency(self, key: str = "default") -> int:
        with self._lock:
            return self._max[key]

    def reset(self) -> None:
        with self._lock:
            self._calls.clear()
            self._flaky.clear()
            self._inflight.clear()
            self._max.clear()
        if self._loop is not None:  # done before the test goes on: a gate it makes is never cleared under it
            asyncio.run_coroutine_threadsafe(self._close_gates(), self._loop).result(10)

    def open(self, gate: str) -> None:
        """Let every call held on `/hold?gate=<gate>` answer, and the ones that come later answer at once."""
        assert self._loop is not None, "not started"
        self._loop.call_soon_threadsafe(lambda: self._gate(gate).set())

    async def _close_gates(self) -> None:
        self._gates.clear()

    def _gate(self, name: str) -> asyncio.Event:
        return self._gates.setdefault(name, asyncio.Event())

    # --- the server ----------------------------------------------------------------------------------------
    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        app.router.add_route("*", "/echo", self._echo)
        app.router.add_post("/sum", self._sum)
        app.router.add_route("*", "/slow", self._slow)
        app.router.add_route("*", "/status/{code}", self._status)
        app.router.add_route("*", "/flaky/{key}", self._flaky_route)
        app.router.add_route("*", "/redirect", self._redirect)
        app.router.add_route("*", "/big", self._big)
        app.router.add_route("*", "/never", self._never)
        app.router.add_route("*", "/hold", self._hold)
        return app

    @web.middleware
    async def _record(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        attempt = request.headers.get("Poulpe-Attempt")
        call = Call(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            query_string=request.rel_url.raw_query_string,
            headers=CIMultiDict(request.headers),
            body=await request.text(),
            at=time.time(),
            job_id=request.headers.get("Poulpe-Job-Id"),
            attempt=int(attempt) if attempt and attempt.isdigit() else None,
        )
        with self._lock:
            self._calls.append(call)
        return await handler(request)

    async def _echo(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "method": request.method,
                "path": request.path,
                "query": dict(request.query),
                "query_string": request.rel_url.raw_query_string,
                "headers": dict(request.headers),
                "body": await request.text(),
            }
        )

    async def _sum(self, request: web.Request) -> web.Response:
        numbers = await request.json()
        return web.Response(text=str(int(numbers["a"]) + int(numbers["b"])))

    async def _slow(self, request: web.Request) -> web.Response:
        key = request.query.get("key", "default")
        with self._lock:
            self._inflight[key] += 1
            self._max[key] = max(self._max[key], self._inflight[key])
        try:
            await asyncio.sleep(int(request.query.get("ms", "100")) / 1000)
        finally:
            with self._lock:
                self._inflight[key] -= 1
        return web.Response(text="ok")

    async def _status(self, request: web.Request) -> web.Response:
        """`?retry_after=S` adds Retry-After; each `?header=Name:value` adds that header (repeats allowed)."""
        code = int(request.match_info["code"])
        headers: CIMultiDict[str] = CIMultiDict()
        if "retry_after" in request.query:
            headers["Retry-After"] = request.query["retry_after"]
        for header in request.query.getall("header", []):
            name, _, value = header.partition(":")
            headers.add(name, value)
        text = None if code in (204, 304) or code < 200 else f"status {code}"
        return web.Response(status=code, text=text, headers=headers)

    async def _flaky_route(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        with self._lock:
            self._flaky[key] += 1
            seen = self._flaky[key]
        if seen <= int(request.query.get("fail", "1")):
            return web.Response(status=500, text=f"failure {seen}")
        return web.Response(text="ok")

    async def _redirect(self, request: web.Request) -> web.Response:
        """`n` hops of 302 (or `code`) before `to`: `/redirect?n=2&to=X` answers twice with a redirect."""
        hops = int(request.query.get("n", "1"))
        code = int(request.query.get("code", "302"))
        to = request.query.get("to", "/echo")
        if hops > 1:
            to = f"/redirect?{urlencode({'n': hops - 1, 'code': code, 'to': to})}"
        return web.Response(status=code, headers={"Location": to})

    async def _big(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        chunk = b"x" * 1024
        with contextlib.suppress(ConnectionError):  # the client may stop reading early: that is the point
            for _ in range(int(request.query.get("kb", "1"))):
                await response.write(chunk)
            await response.write_eof()
        return response

    async def _never(self, request: web.Request) -> web.Response:
        assert self._stopping is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), 3600)
        return web.Response(status=504, text="never")

    async def _hold(self, request: web.Request) -> web.Response:
        """Answer `?status=` (200) once the test opens `?gate=` (`open`), or after `?ms=` (60 s) whatever comes first:
        an attempt that lasts exactly as long as the test needs it to."""
        gate = self._gate(request.query["gate"])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(gate.wait(), int(request.query.get("ms", "60000")) / 1000)
        status = int(request.query.get("status", "200"))
        return web.Response(status=status, text=f"status {status}")

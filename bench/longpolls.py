"""7. 10,000 concurrent long-polls on scheduled jobs: poulpe's RSS beyond its baseline while they wait."""

from __future__ import annotations

import asyncio
import threading
import time

from bench import api
from bench.context import Context
from bench.procs import Proc, http_status, open_fds
from bench.results import Result, at_most

NAME, TITLE = "longpolls", "10,000 concurrent long-polls"
MIB = 1024 * 1024
EXTRA_TARGET_MIB = 200
POLL_TIMEOUT = 120
PREFIX = "lp-"


class Lines:
    """Collects a client's stdout lines in a thread, so the bench can wait for one without blocking."""

    def __init__(self, proc: Proc) -> None:
        assert proc.popen is not None and proc.popen.stdout is not None
        self.lines: list[str] = []
        self._stdout = proc.popen.stdout
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for raw in self._stdout:
            self.lines.append(raw.decode(errors="replace").strip())

    async def wait_for(self, prefixes: tuple[str, ...], within: float) -> str:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for line in self.lines:
                if line.startswith(prefixes):
                    return line
            await asyncio.sleep(0.1)
        raise TimeoutError(f"the client never said {' or '.join(prefixes)}; it said: {self.lines[-5:]}")


async def stable_rss(proc: Proc, *, within: float, tolerance: int = MIB) -> int:
    """RSS once four samples 0.5 s apart agree within `tolerance` (or when `within` seconds pass)."""
    samples: list[int] = []
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        samples.append(proc.rss())
        if len(samples) >= 4 and max(samples[-4:]) - min(samples[-4:]) <= tolerance:
            break
        await asyncio.sleep(0.5)
    return samples[-1]


async def wait_fds(proc: Proc, at_least: int, within: float) -> int:
    deadline = time.monotonic() + within
    fds = open_fds(proc.pid)
    while fds < at_least and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        fds = open_fds(proc.pid)
    return fds


async def measure(ctx: Context) -> Result:
    n = ctx.pick(10_000, 2_000)
    result = Result(
        NAME,
        TITLE,
        f"A fresh poulpe (RLIMIT_NOFILE raised to 65,536, as for the client) holds {n:,} jobs due in 30 days,"
        f" ids {PREFIX}0…; its RSS at rest is the baseline. A client process (aiohttp, bench/client.py) then opens"
        f" {n:,} connections, each a GET /task_resp/<id>?timeout={POLL_TIMEOUT}, in steps of 500; once every"
        " request is sent, poulpe holds one more open socket per poll (counted in /proc/<pid>/fd) and its RSS"
        " is steady (four samples 0.5 s apart within 1 MiB), the RSS is read again. Then the client is stopped"
        " (the polls are dropped) and poulpe's sockets and RSS are read once more.",
    )
    poulpe = ctx.procs.poulpe("poulpe").start()
    await asyncio.to_thread(poulpe.wait_http, "/health")
    async with api.session(4) as session:
        client = api.PoulpeClient(poulpe.url, session)
        for first in range(0, n, 1000):
            jobs = [
                {"id": f"{PREFIX}{i}", "method": "GET", "name": "http://127.0.0.1:9/later", "delay": 30 * 86400}
                for i in range(first, min(first + 1000, n))
            ]
            await client.submit(jobs)
    await asyncio.sleep(1.0)
    base_fds = open_fds(poulpe.pid)
    baseline = await stable_rss(poulpe, within=10)
    ctx.log(f"baseline {baseline / MIB:.0f} MiB, {base_fds} fds; opening {n:,} long-polls")
    polls = ctx.procs.module(
        "longpoll-client", "client", "longpoll", "--url", poulpe.url, "--prefix", PREFIX, "--n", str(n),
        "--timeout", str(POLL_TIMEOUT), "--max-seconds", str(POLL_TIMEOUT + 30),
    ).start(stdout_pipe=True)  # fmt: skip
    lines = Lines(polls)
    said = await lines.wait_for(("all-sent", "not-all-sent"), within=ctx.pick(120, 60))
    fds = await wait_fds(poulpe, base_fds + n, within=30)
    held = await stable_rss(poulpe, within=30)
    start = time.monotonic()
    health = await asyncio.to_thread(http_status, poulpe.port, "/health", 10.0)
    health_ms = (time.monotonic() - start) * 1000
    answered = [line for line in lines.lines if line.startswith("answered")]
    ctx.log(f"holding: {held / MIB:.0f} MiB, {fds} fds; stopping the client")
    polls.stop()
    await asyncio.sleep(3.0)
    released_fds = open_fds(poulpe.pid)
    released = poulpe.rss()
    extra = (held - baseline) / MIB
    result.add(
        f"RSS with {n:,} long-polls waiting",
        held / MIB,
        "MiB",
        "baseline: same poulpe, no poll",
        baseline / MIB,
    )
    result.add(
        f"extra RSS for {n:,} long-polls",
        extra,
        "MiB",
        target=f"≤ {EXTRA_TARGET_MIB} MiB",
        met=at_most(extra, EXTRA_TARGET_MIB),
    )
    result.add("extra RSS per long-poll", (held - baseline) / n / 1024, "KiB")
    result.notes.append(
        f"The client said `{said}`; poulpe held {fds - base_fds:,} more sockets than at rest"
        f" ({len(answered)} polls answered early). GET /health answered {health} in {health_ms:.1f} ms while"
        f" they waited. After the client went: {released_fds - base_fds:+,} sockets, RSS {released / MIB:.0f} MiB."
    )
    result.raw = {"n": n, "baseline": baseline, "held": held, "released": released, "fds": [base_fds, fds]}
    return result

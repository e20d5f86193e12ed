"""6. A million scheduled jobs: fill rate, RSS, and restart-to-serving after kill -9 on the same file."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from bench import api
from bench.context import Context
from bench.procs import Proc
from bench.results import Result, at_most

NAME, TITLE = "million", "1,000,000 scheduled jobs"
CONNECTIONS, BATCH = 4, 1000
JOB = {"method": "GET", "name": "http://127.0.0.1:9/later", "delay": 30 * 86400}
MIB = 1024 * 1024
RSS_TARGET_MIB, RESTART_TARGET_S = 1024, 10.0


async def fill(client: api.PoulpeClient, n: int, within: float) -> float:
    """Post `n` jobs in batches of BATCH over CONNECTIONS concurrent connections; returns the seconds it took."""
    batches = iter(range(0, n, BATCH))
    deadline = time.monotonic() + within

    async def sender() -> None:
        for first in batches:
            if time.monotonic() > deadline:
                raise TimeoutError(f"filling {n:,} jobs took more than {within:.0f} s")
            await client.submit([JOB] * min(BATCH, n - first))

    start = time.monotonic()
    await asyncio.gather(*(sender() for _ in range(CONNECTIONS)))
    return time.monotonic() - start


async def settled_rss(proc: Proc, seconds: float = 2.0) -> int:
    await asyncio.sleep(seconds)
    return proc.rss()


async def scheduled(client: api.PoulpeClient) -> int:
    return int((await client.get("/sys_info"))["counts"]["scheduled"])


async def measure(ctx: Context) -> Result:
    n = ctx.pick(1_000_000, 50_000)
    result = Result(
        NAME,
        TITLE,
        f"{n:,} GET jobs due in 30 days (no id) are posted to a fresh poulpe in batches of {BATCH:,} over"
        f" {CONNECTIONS} concurrent connections (the fill rate); after 2 s of rest its RSS is read from"
        " /proc/<pid>/status. Then poulpe is killed with SIGKILL and started again on the same files: restart to"
        " serving is the time from starting the process until GET /health answers 200 (polled every 10 ms);"
        " RSS is read again once it serves and after 2 s. The empty poulpe's RSS is the peer.",
    )
    poulpe = ctx.procs.poulpe("poulpe").start()
    await asyncio.to_thread(poulpe.wait_http, "/health")
    empty = await settled_rss(poulpe, 1.0)
    async with api.session(CONNECTIONS) as session:
        client = api.PoulpeClient(poulpe.url, session)
        ctx.log(f"filling {n:,} jobs")
        seconds = await fill(client, n, within=ctx.pick(900, 120))
        full = await settled_rss(poulpe)
        stored = await scheduled(client)
    db = Path(poulpe.args[poulpe.args.index("--data") + 1])
    size = sum(p.stat().st_size for p in db.parent.glob(f"{db.name}*"))
    ctx.log(f"filled in {seconds:.1f} s; RSS {full / MIB:.0f} MiB; kill -9 and restart")
    poulpe.kill9()
    again = ctx.procs.respawn(poulpe).start()
    restart = await asyncio.to_thread(again.wait_http, "/health", timeout=ctx.pick(300, 60), interval=0.01)
    serving_rss = again.rss()
    after = await settled_rss(again)
    async with api.session(1) as session:
        recovered = await scheduled(api.PoulpeClient(again.url, session))
    result.add(f"fill, batches of {BATCH:,} on {CONNECTIONS} connections", n / seconds, "jobs/s")
    result.add(
        f"RSS holding {n:,} scheduled jobs",
        full / MIB,
        "MiB",
        "empty poulpe",
        empty / MIB,
        target=f"≤ {RSS_TARGET_MIB:,} MiB",
        met=at_most(full / MIB, RSS_TARGET_MIB),
    )
    result.add(
        "restart to serving after kill -9",
        restart,
        "s",
        target=f"≤ {RESTART_TARGET_S:g} s",
        met=at_most(restart, RESTART_TARGET_S),
    )
    result.add(
        "RSS after restart (2 s after serving)",
        after / MIB,
        "MiB",
        "empty poulpe",
        empty / MIB,
        target=f"≤ {RSS_TARGET_MIB:,} MiB",
        met=at_most(max(after, serving_rss) / MIB, RSS_TARGET_MIB),
    )
    result.notes.append(
        f"Store on disk: {size / MIB:,.0f} MiB (SQLite file and WAL); {stored:,} jobs scheduled before the kill,"
        f" {recovered:,} after the restart; RSS when /health first answered: {serving_rss / MIB:,.0f} MiB."
    )
    if stored != n or recovered != n:
        result.notes.append(f"**Expected {n:,} scheduled jobs before and after the restart.**")
    result.raw = {"n": n, "fill_s": seconds, "restart_s": restart, "rss": [empty, full, serving_rss, after]}
    return result

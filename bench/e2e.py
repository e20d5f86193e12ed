"""5. End to end: HTTP-call jobs/s through poulpe, beside the raw aiohttp client against the same target."""

from __future__ import annotations

import asyncio
import time

from bench import api
from bench.clients import CONCURRENCY, raw_client, start_target
from bench.context import Context
from bench.procs import cpu_seconds
from bench.results import Result, at_least

NAME, TITLE = "e2e", "End to end: HTTP-call jobs"
WORKERS = (64, 8)
RATIO_TARGET = 0.50


async def jobs_per_second(ctx: Context, target_url: str, workers: int, n: int, notes: list[str]) -> tuple[float, float]:
    """Jobs/s from first submit to last final, and poulpe's CPU seconds (all threads) meanwhile."""
    poulpe = ctx.procs.poulpe(f"poulpe-w{workers}", "--max_retry", "0", workers=workers).start()
    await asyncio.to_thread(poulpe.wait_http, "/health")
    job = {"method": "GET", "name": f"{target_url}/job"}
    async with api.session() as session:
        client = api.PoulpeClient(poulpe.url, session)
        start, cpu = time.monotonic(), cpu_seconds(poulpe.pid)
        await client.submit_copies(job, n)
        end = await client.wait_finished(n, within=ctx.pick(300, 60))
        cpu = cpu_seconds(poulpe.pid) - cpu
        failed = int((await client.get("/sys_info"))["today"]["failed"])
        client.report_errors(notes, f"--workers {workers}")
    poulpe.stop()
    if failed:
        notes.append(f"--workers {workers}: {failed} jobs failed.")
    return n / (end - start), cpu


async def measure(ctx: Context) -> Result:
    n = ctx.pick(20_000, 3_000)
    result = Result(
        NAME,
        TITLE,
        f"{n:,} immediate GET jobs (no id) to bench/target.py are posted to a fresh poulpe in batches of 1,000, one"
        " batch after the other; the clock runs from the first submit until /sys_info (polled every 0.2 s) counts"
        " them all ended (succeeded or, with --max_retry 0, dead). poulpe logs at its default level (one line per"
        f" transition). Beside it: the raw aiohttp client, {CONCURRENCY} requests in flight, on the same target in"
        " the same run.",
    )
    target = await start_target(ctx)
    ctx.log("raw aiohttp")
    raw = await raw_client(ctx, target, "aiohttp", n, ctx.pick(60, 15))
    result.raw["aiohttp_rps"] = raw["rps"]
    for workers in WORKERS:
        ctx.log(f"poulpe --workers {workers}")
        per_s, cpu = await jobs_per_second(ctx, target.url, workers, n, result.notes)
        result.notes.append(
            f"--workers {workers}: poulpe used {cpu / n * 1e6:,.0f} µs of CPU per job (all threads, user + system,"
            f" intake included); the raw aiohttp client {raw['cpu_s'] / raw['done'] * 1e6:,.0f} µs per request"
            f" ({raw['cpu_s'] / raw['done'] / (cpu / n):.0%} of poulpe's)."
        )
        main = workers == WORKERS[0]
        result.add(
            f"HTTP-call jobs, --workers {workers}",
            per_s,
            "jobs/s",
            f"raw aiohttp, concurrency {CONCURRENCY}",
            raw["rps"],
            target=f"≥ {RATIO_TARGET:.0%} of raw" if main else None,
            met=at_least(per_s / raw["rps"], RATIO_TARGET) if main else None,
            peer_unit="req/s",
        )
        result.raw[f"workers_{workers}"] = per_s
    return result

"""3. HTTP client comparison: aiohttp and httpx, raw, at concurrency 64 against the same local target."""

from __future__ import annotations

import asyncio
from typing import Any

from bench import wrk
from bench.context import Context
from bench.procs import Proc
from bench.results import Result

NAME, TITLE = "clients", "HTTP client: aiohttp or httpx"
CONCURRENCY = 64


async def start_target(ctx: Context) -> Proc:
    target = ctx.procs.target().start()
    await asyncio.to_thread(target.wait_http, "/")
    return target


async def raw_client(ctx: Context, target: Proc, lib: str, n: int, max_seconds: float) -> dict[str, Any]:
    """`n` GETs by `lib` alone (one shared client, `CONCURRENCY` at once), in a process of its own."""
    return await ctx.client(
        f"client-{lib}", "burst", "--lib", lib, "--url", f"{target.url}/raw", "--n", str(n),
        "--concurrency", str(CONCURRENCY), "--max-seconds", str(max_seconds), within=max_seconds + 60,
    )  # fmt: skip


async def measure(ctx: Context) -> Result:
    n_aiohttp, n_httpx, cap = ctx.pick(20_000, 3_000), ctx.pick(5_000, 1_000), ctx.pick(60, 15)
    seconds = ctx.pick(5, 2)
    result = Result(
        NAME,
        TITLE,
        f"Each client library, in a process of its own on the default asyncio loop, sends GETs through one shared"
        f" client with {CONCURRENCY} requests in flight to bench/target.py (a bare ASGI app on uvicorn with"
        f" httptools and uvloop, in its own process) and reads each answer: {n_aiohttp:,} requests for aiohttp,"
        f" {n_httpx:,} for httpx (each stops after {cap} s at most), after a short warm-up. The target's own"
        f" ceiling is wrk's GET rate against it ({CONCURRENCY} connections, {seconds} s).",
    )
    target = await start_target(ctx)
    ctx.log("target alone (wrk)")
    ceiling = await asyncio.to_thread(wrk.get, f"{target.url}/wrk", connections=CONCURRENCY, seconds=seconds)
    ctx.log("aiohttp")
    aio = await raw_client(ctx, target, "aiohttp", n_aiohttp, cap)
    ctx.log("httpx")
    hx = await raw_client(ctx, target, "httpx", n_httpx, cap)
    result.add("aiohttp, concurrency 64", aio["rps"], "req/s", "the target alone (wrk)", ceiling.rps)
    result.add("httpx, concurrency 64", hx["rps"], "req/s", "aiohttp", aio["rps"])
    for found in (aio, hx):
        if found["errors"] or found["done"] < (n_aiohttp if found["lib"] == "aiohttp" else n_httpx):
            result.notes.append(f"{found['lib']}: {found['done']:.0f} answered, {found['errors']:.0f} errors.")
    result.notes.append(
        f"aiohttp sends {aio['rps'] / hx['rps']:.1f}x the requests httpx does: poulpe's HTTP runner uses aiohttp."
    )
    result.raw = {"aiohttp": aio, "httpx": hx, "target_wrk_rps": ceiling.rps}
    return result

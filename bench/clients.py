"""3. HTTP client comparison: aiohttp, httpx, and (from .venv-peers) aiosonic, curl-cffi and rnet, raw, at
concurrency 64 against the same local target: rate and CPU per request, which is what a job's call costs."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

from bench import wrk
from bench.context import Context, finish_client
from bench.procs import Proc
from bench.results import Result

NAME, TITLE = "clients", "HTTP client: aiohttp or another"
CONCURRENCY = 64
PEERS_VENV = Path(__file__).resolve().parent.parent / ".venv-peers"
PEER_LIBS = ("aiosonic", "curl_cffi", "rnet")


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


async def peer_client(ctx: Context, target: Proc, lib: str, n: int, max_seconds: float) -> dict[str, Any]:
    """`n` GETs by a client of .venv-peers (bench/peer_clients.py), in a process of its own."""
    python = PEERS_VENV / "bin" / "python"
    argv = [str(python), "-m", "bench.peer_clients", "--lib", lib, "--url", f"{target.url}/raw", "--n", str(n)]
    argv += ["--concurrency", str(CONCURRENCY), "--max-seconds", str(max_seconds)]
    for tries_left in (1, 0):  # rnet 2.4 crashed (SIGSEGV) once in a while here: one more try
        proc = ctx.procs._add(Proc(f"peer-{lib}", argv, ctx.workdir / f"peer-{lib}.log")).start(stdout_pipe=True)
        try:
            return await finish_client(proc, max_seconds + 60)
        except RuntimeError:
            if not tries_left:
                raise
    raise AssertionError("unreachable")


def peer_versions() -> str:
    found = subprocess.run(
        [str(PEERS_VENV / "bin" / "python"), "-m", "pip", "list", "--format", "freeze", "--disable-pip-version-check"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    wanted = {"aiosonic", "curl_cffi", "curl-cffi", "rnet", "aiohttp", "granian"}
    return ", ".join(line.replace("==", " ") for line in found if line.split("==")[0].lower() in wanted)


def us_per_request(found: dict[str, Any]) -> float:
    return float(found["cpu_s"]) / max(float(found["done"]), 1.0) * 1e6


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
    peers: dict[str, dict[str, Any]] = {}
    if (PEERS_VENV / "bin" / "python").exists():
        for lib in PEER_LIBS:
            ctx.log(lib)
            try:
                peers[lib] = await peer_client(ctx, target, lib, n_aiohttp, cap)
            except RuntimeError as exc:
                result.notes.append(f"{lib} did not run: {str(exc).splitlines()[0]}")
        ctx.log("aiohttp again (after the others: the machine moves)")
        again = await raw_client(ctx, target, "aiohttp", n_aiohttp, cap)
        if again["rps"] > aio["rps"]:
            aio = again
        result.notes.append(f"From {PEERS_VENV.name}: {peer_versions()}.")
    else:
        result.notes.append(
            f"{PEERS_VENV.name} is missing (./bench/run.sh makes it): aiosonic, curl-cffi, rnet not run."
        )
    result.add("aiohttp, concurrency 64", aio["rps"], "req/s", "the target alone (wrk)", ceiling.rps)
    result.add("aiohttp CPU per request", us_per_request(aio), "µs")
    result.add("httpx, concurrency 64", hx["rps"], "req/s", "aiohttp", aio["rps"])
    for lib, found in peers.items():
        result.add(f"{lib}, concurrency 64", found["rps"], "req/s", "aiohttp", aio["rps"])
        result.add(f"{lib} CPU per request", us_per_request(found), "µs", "aiohttp", us_per_request(aio))
    for found in (aio, hx, *peers.values()):
        if found["errors"] or found["done"] < (n_httpx if found["lib"] == "httpx" else n_aiohttp):
            result.notes.append(f"{found['lib']}: {found['done']:.0f} answered, {found['errors']:.0f} errors.")
    best = max((aio, *peers.values()), key=lambda found: float(found["rps"]))
    result.notes.append(
        f"The fastest here: {best['lib']} ({best['rps']:,.0f} req/s, {us_per_request(best):,.0f} µs of CPU per"
        f" request); aiohttp {aio['rps']:,.0f} req/s at {us_per_request(aio):,.0f} µs. poulpe's HTTP runner uses"
        " aiohttp (see docs/BENCHMARKS.md for the choice)."
    )
    result.raw = {"aiohttp": aio, "httpx": hx, **peers, "target_wrk_rps": ceiling.rps}
    return result

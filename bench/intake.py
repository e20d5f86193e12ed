"""1. Intake: POST /task_in_queue with durable storage, beside the same Starlette+uvicorn app answering unstored."""

from __future__ import annotations

import asyncio

import msgspec

from bench import wrk
from bench.context import Context
from bench.results import Result, at_least

NAME, TITLE = "intake", "Intake"
# Far in the future, so no job runs during the measurement; no id, so every job is a new one.
JOB = {"method": "GET", "name": "http://127.0.0.1:9/never", "delay": 864000}
SINGLE_CONNECTIONS, BATCH_CONNECTIONS = 64, 16
BATCHES = (100, 1000)
RATIO_TARGET, BATCH_TARGET = 0.70, 20_000


def body(batch: int | None) -> bytes:
    return msgspec.json.encode(JOB if batch is None else [JOB] * batch)


def wrk_settings(ctx: Context) -> dict[str, float]:
    return {"seconds": ctx.pick(10, 2), "warmup": ctx.pick(3, 1)}


async def bare_rps(ctx: Context, loop: str, batches: tuple[int | None, ...]) -> dict[int | None, wrk.WrkRun]:
    """The ceiling: one bare-app process, every body size in turn."""
    bare = ctx.procs.bare(loop).start()
    await asyncio.to_thread(bare.wait_http, "/health")
    runs = {}
    for batch in batches:
        connections = SINGLE_CONNECTIONS if batch is None else BATCH_CONNECTIONS
        runs[batch] = await asyncio.to_thread(
            wrk.post, f"{bare.url}/task_in_queue", body(batch), ctx.workdir, connections=connections,
            pid=bare.pid, **wrk_settings(ctx),
        )  # fmt: skip
    bare.stop()
    return runs


async def durable_rps(ctx: Context, loop: str, batch: int | None) -> wrk.WrkRun:
    """A fresh poulpe (empty store) per run, so every run starts from the same point."""
    poulpe = ctx.procs.poulpe(f"poulpe-{loop}-{batch or 1}", loop=loop).start()
    await asyncio.to_thread(poulpe.wait_http, "/health")
    connections = SINGLE_CONNECTIONS if batch is None else BATCH_CONNECTIONS
    run = await asyncio.to_thread(
        wrk.post, f"{poulpe.url}/task_in_queue", body(batch), ctx.workdir, connections=connections,
        pid=poulpe.pid, **wrk_settings(ctx),
    )  # fmt: skip
    poulpe.stop()
    return run


def check(result: Result, label: str, run: wrk.WrkRun) -> None:
    if run.non_2xx or run.socket_errors:
        result.notes.append(f"{label}: {run.non_2xx} non-2xx answers and {run.socket_errors} socket errors.")


def cpu_note(result: Result, label: str, durable: wrk.WrkRun, bare: wrk.WrkRun, batch: int) -> None:
    """CPU per job of both servers: what decides the ratio once the machine's 2 cores are the limit."""
    ours, theirs = durable.cpu_us_per_request, bare.cpu_us_per_request
    if ours is None or theirs is None:
        return
    result.notes.append(
        f"{label}: poulpe used {ours / batch:,.1f} µs of CPU per job (all threads, user + system), the bare app"
        f" {theirs / batch:,.1f} µs ({theirs / ours:.0%} of poulpe's)."
    )


async def measure(ctx: Context) -> Result:
    result = Result(
        NAME,
        TITLE,
        "wrk (1 thread, bench/post.lua) posts the same body for {s} s after a {w} s warm-up, {c} connections for "
        "single jobs and {cb} for batches; each job is delayed 10 days (nothing runs) and has no id (each is new). "
        "poulpe runs as its `poulpe` command (asyncio loop, the default) on an empty SQLite file, a fresh process "
        "per run; the ceiling is bench/bare_app.py, the same Starlette+uvicorn set-up (httptools, access log off) "
        "decoding the body with msgspec and answering 202 without storing.".format(
            s=wrk_settings(ctx)["seconds"], w=wrk_settings(ctx)["warmup"], c=SINGLE_CONNECTIONS, cb=BATCH_CONNECTIONS
        ),
    )
    ctx.log("bare app")
    bare = await bare_rps(ctx, "asyncio", (None, *BATCHES))
    ctx.log("poulpe, one job per request")
    single = await durable_rps(ctx, "asyncio", None)
    check(result, "single durable", single)
    result.add(
        "single job per request, durable",
        single.rps,
        "req/s",
        peer="bare Starlette+uvicorn, same body",
        peer_value=bare[None].rps,
        target=f"≥ {RATIO_TARGET:.0%} of bare",
        met=at_least(single.rps / bare[None].rps, RATIO_TARGET),
    )
    result.raw["single"] = {"durable_rps": single.rps, "bare_rps": bare[None].rps}
    cpu_note(result, "one job per request", single, bare[None], 1)
    for batch in BATCHES:
        ctx.log(f"poulpe, batches of {batch}")
        run = await durable_rps(ctx, "asyncio", batch)
        check(result, f"batch {batch} durable", run)
        result.add(
            f"batches of {batch} jobs per request, durable",
            run.rps * batch,
            "jobs/s",
            peer="bare app, same batches",
            peer_value=bare[batch].rps * batch,
            target=f"≥ {BATCH_TARGET:,} jobs/s",
            met=at_least(run.rps * batch, BATCH_TARGET),
        )
        result.raw[f"batch_{batch}"] = {"durable_rps": run.rps, "bare_rps": bare[batch].rps}
        cpu_note(result, f"batches of {batch}", run, bare[batch], batch)
    return result

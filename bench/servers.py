"""4. ASGI server: the bare intake app on uvicorn (httptools, poulpe's server) and on granian, in turns.

granian comes from .venv-peers (bench/run.sh makes it; it is no dependency of poulpe). The same bare app
(bench/bare_app.py: one POST route decoding the job and answering 202) is served by uvicorn with httptools and the
asyncio loop, as poulpe serves itself, then by granian (`--interface asgi --loop asyncio`, one worker, no access
log), in turns, twice each: wrk POSTs one job per request on 64 connections. The server's CPU per request comes
from /proc (granian's worker process when it makes one).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from bench import wrk
from bench.context import Context
from bench.intake import body
from bench.procs import Proc, free_port
from bench.results import Result

NAME, TITLE = "servers", "ASGI server: uvicorn or granian"
PEERS_VENV = Path(__file__).resolve().parent.parent / ".venv-peers"
CONNECTIONS = 64
ROUNDS = 2


def serving_pid(pid: int) -> int:
    """The process that serves: granian's only worker when it forks one, else the process itself."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return pid
    return int(children[-1]) if children else pid


def granian(ctx: Context, n: int) -> Proc:
    port = free_port()
    argv = [str(PEERS_VENV / "bin" / "granian"), "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--workers", "1", "--loop", "asyncio", "--no-access-log", "bench.bare_app:app"]
    return ctx.procs._add(Proc(f"granian-{n}", argv, ctx.workdir / f"granian-{n}.log", port=port))


async def one(ctx: Context, proc: Proc) -> wrk.WrkRun:
    proc.start()
    await asyncio.to_thread(proc.wait_http, "/health")
    seconds, warmup = ctx.pick(8, 2), ctx.pick(2, 1)
    run = await asyncio.to_thread(
        wrk.post, f"{proc.url}/task_in_queue", body(None), ctx.workdir, connections=CONNECTIONS,
        pid=serving_pid(proc.pid), seconds=seconds, warmup=warmup,
    )  # fmt: skip
    proc.stop()
    return run


async def measure(ctx: Context) -> Result:
    result = Result(NAME, TITLE, (__doc__ or "").split("\n\n", 1)[1].replace("\n", " ").strip())
    if not (PEERS_VENV / "bin" / "granian").exists():
        raise RuntimeError(f"{PEERS_VENV} has no granian: ./bench/run.sh makes it")
    runs: dict[str, list[wrk.WrkRun]] = {"uvicorn": [], "granian": []}
    for n in range(ROUNDS):
        ctx.log(f"uvicorn, round {n + 1}")
        runs["uvicorn"].append(await one(ctx, ctx.procs.bare("asyncio")))
        ctx.log(f"granian, round {n + 1}")
        runs["granian"].append(await one(ctx, granian(ctx, n)))
    best = {server: max(found, key=lambda run: run.rps) for server, found in runs.items()}
    uv, gr = best["uvicorn"], best["granian"]
    result.add("granian, one job per request", gr.rps, "req/s", "uvicorn + httptools", uv.rps)
    if gr.cpu_us_per_request is not None and uv.cpu_us_per_request is not None:
        result.add("granian CPU per request", gr.cpu_us_per_request, "µs", "uvicorn", uv.cpu_us_per_request)
    for server, found in runs.items():
        result.notes.append(
            f"{server}: "
            + ", ".join(f"{run.rps:,.0f} req/s at {run.cpu_us_per_request or 0:,.0f} µs of CPU" for run in found)
            + " (round by round)."
        )
    result.raw = {
        server: [{"rps": run.rps, "cpu_us": run.cpu_us_per_request, "non_2xx": run.non_2xx} for run in found]
        for server, found in runs.items()
    }
    return result

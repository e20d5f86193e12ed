"""8. Redis store: end-to-end HTTP-call jobs/s with one and three poulpe processes, beside arq on the same Redis."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from pathlib import Path

import redis.asyncio as aioredis

from bench import api
from bench.clients import start_target
from bench.context import Context, finish_client
from bench.procs import Proc, cpu_seconds, free_port
from bench.results import Result, at_least

NAME, TITLE = "redis", "Redis store: poulpe processes beside arq"
WORKERS = 64  # per process, for both
RATIO_TARGET = 4.0  # against arq at its fastest (poll_delay 0)
ARQ_POLLS = (0.5, 0.0)  # arq's default poll delay, and its fastest
ARQ_VENV = Path(__file__).resolve().parent.parent / ".venv-arq"


def start_redis(ctx: Context) -> Proc:
    port = free_port()
    home = ctx.workdir / "redis"
    home.mkdir()
    exe = shutil.which("redis-server") or "redis-server"
    args = [exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(home), "--save", ""]
    args += ["--appendonly", "yes", "--appendfsync", "everysec"]
    proc = ctx.procs._add(Proc("redis", args, home / "redis.log", port=port))
    return proc.start()


def peer_versions() -> list[str]:
    arq, redis_py = subprocess.run(
        [str(ARQ_VENV / "bin" / "python"), "-c", "import arq, redis; print(arq.VERSION, redis.__version__)"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    server = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()[2]
    return [
        f"arq {arq} with redis-py {redis_py}, in .venv-arq (arq needs redis-py < 6).",
        f"redis-server {server.removeprefix('v=')}.",
    ]


async def wait_redis(url: str) -> aioredis.Redis:
    client = aioredis.Redis.from_url(url)
    for _ in range(200):
        try:
            await client.ping()
            return client
        except OSError:
            await asyncio.sleep(0.05)
        except aioredis.ConnectionError:
            await asyncio.sleep(0.05)
    raise RuntimeError("redis-server did not answer")


async def redis_counts(admin: aioredis.Redis) -> dict[str, int]:
    """Redis's own counters: commands (a script's EVALSHA is one, and so is each command the script calls) and
    socket reads (one per request or pipeline a client sends: its round trips); then the calls of each command, and
    the µs Redis spent in scripts (EVALSHA's `usec`, the commands they call included; wall time, so a loaded machine
    inflates it)."""
    stats = await admin.info("stats")
    counts = {"commands": int(stats["total_commands_processed"]), "reads": int(stats["total_reads_processed"])}
    counts["script_usec"] = 0
    for name, figures in (await admin.info("commandstats")).items():
        counts[name.removeprefix("cmdstat_")] = int(figures["calls"])
        if name in ("cmdstat_evalsha", "cmdstat_eval"):
            counts["script_usec"] += int(figures["usec"])
    return counts


def per_job(before: dict[str, int], after: dict[str, int], n: int) -> dict[str, float]:
    return {name: (after[name] - before.get(name, 0)) / n for name in after}


def commands_note(trips: dict[str, float]) -> str:
    """The commands a job cost, most called first (those called at least once per 20 jobs)."""
    skip = ("commands", "reads", "script_usec")
    named = sorted(((v, k) for k, v in trips.items() if k not in skip and v >= 0.05), reverse=True)
    return ", ".join(f"{k} {v:.2f}" for v, k in named)


async def poulpe_run(
    ctx: Context, redis_url: str, target: str, processes: int, n: int, notes: list[str]
) -> tuple[float, float]:
    """Jobs/s from the first submit (batches of 1,000, round-robin over the processes) to the last final, and the
    processes' CPU seconds over that time."""
    procs = [
        ctx.procs.poulpe(f"poulpe-{processes}-{i}", "--redis", redis_url, "--max_retry", "0", workers=WORKERS).start()
        for i in range(processes)
    ]
    for proc in procs:
        await asyncio.to_thread(proc.wait_http, "/health")
    job = {"method": "GET", "name": f"{target}/job"}
    async with api.session() as session:
        clients = [api.PoulpeClient(proc.url, session) for proc in procs]
        cpu = sum(cpu_seconds(proc.pid) for proc in procs)
        start = time.monotonic()
        for i, first in enumerate(range(0, n, 1000)):
            await clients[i % processes].submit([job] * min(1000, n - first))
        end = await clients[0].wait_finished(n, within=ctx.pick(300, 60), interval=0.05)
        cpu = sum(cpu_seconds(proc.pid) for proc in procs) - cpu
        failed = int((await clients[0].get("/sys_info"))["today"]["failed"])
        clients[0].report_errors(notes, f"poulpe x{processes}")
    for proc in procs:
        proc.stop()
    if failed:
        notes.append(f"poulpe x{processes}: {failed} jobs failed.")
    return n / (end - start), cpu


async def arq_run(ctx: Context, redis_url: str, target: str, processes: int, poll: float, n: int) -> float:
    """The same jobs through arq, from its own venv: `processes` workers, and the producer that times them."""
    python = ARQ_VENV / "bin" / "python"
    if not python.exists():
        raise RuntimeError(f"{ARQ_VENV} is missing: ./bench/run.sh makes it")
    os.environ.update(BENCH_REDIS=redis_url, BENCH_MAX_JOBS=str(WORKERS), BENCH_POLL_DELAY=str(poll))
    os.environ["PYTHONPATH"] = str(ARQ_VENV.parent)  # the arq command imports bench.arq_peer from the checkout
    workers = [
        ctx.procs._add(
            Proc(f"arq-{processes}-{poll}-{i}", [str(ARQ_VENV / "bin" / "arq"), "bench.arq_peer.WorkerSettings"],
                 ctx.workdir / f"arq-{processes}-{poll}-{i}.log")
        ).start()
        for i in range(processes)
    ]  # fmt: skip
    await asyncio.sleep(1.5)  # the workers connect
    within = ctx.pick(600, 120)
    producer = ctx.procs._add(
        Proc("arq-producer", [str(python), "-m", "bench.arq_peer", "--n", str(n), "--url", f"{target}/job",
             "--within", str(within)], ctx.workdir / "arq-producer.log")
    ).start(stdout_pipe=True)  # fmt: skip
    figures = await finish_client(producer, within + 30)
    for worker in workers:
        worker.stop()
    return float(figures["jobs_per_s"])


async def measure(ctx: Context) -> Result:
    n = ctx.pick(10_000, 1_000)
    result = Result(
        NAME,
        TITLE,
        f"One redis-server (AOF on, appendfsync everysec) serves both. poulpe: {n:,} immediate GET jobs to"
        " bench/target.py posted in batches of 1,000 (round-robin over the processes), with --redis and"
        f" --workers {WORKERS} per process; the clock runs from the first submit until /sys_info (polled every"
        f" 0.05 s) counts them all ended. arq: the same number of jobs doing the same GET with one shared aiohttp"
        f" session, enqueued 1,000 at a time, run by arq workers with max_jobs={WORKERS} each, counted done by an"
        " INCR in the job (polled every 0.05 s). Redis is flushed between runs.",
    )
    result.notes.extend(peer_versions())
    target = await start_target(ctx)
    redis_proc = start_redis(ctx)
    redis_url = f"redis://127.0.0.1:{redis_proc.port}/0"
    admin = await wait_redis(redis_url)
    try:
        for processes in (1, 3):
            await admin.flushall()
            ctx.log(f"poulpe x{processes}")
            before, redis_cpu = await redis_counts(admin), cpu_seconds(redis_proc.pid)
            mine, poulpe_cpu = await poulpe_run(ctx, redis_url, target.url, processes, n, result.notes)
            trips = per_job(before, await redis_counts(admin), n)
            redis_cpu = cpu_seconds(redis_proc.pid) - redis_cpu
            result.raw[f"poulpe_{processes}"] = mine
            result.raw[f"poulpe_{processes}_redis_per_job"] = trips
            result.notes.append(
                f"poulpe x{processes}: {trips['reads']:.2f} Redis round trips per job (requests and pipelines Redis"
                f" read, start-up, /sys_info polls and pub/sub included), {trips['commands']:.2f} commands"
                f" ({commands_note(trips)}); CPU per job: redis-server {redis_cpu / n * 1e6:.0f} µs (scripts' usec"
                f" by Redis's clock {trips['script_usec']:.0f} µs), poulpe {poulpe_cpu / n * 1e6:.0f} µs."
            )
            result.raw[f"poulpe_{processes}_cpu_us_per_job"] = {
                "redis": redis_cpu / n * 1e6,
                "poulpe": poulpe_cpu / n * 1e6,
            }
            for poll in ARQ_POLLS:
                await admin.flushall()
                ctx.log(f"arq x{processes} poll_delay {poll}")
                before, redis_cpu = await redis_counts(admin), cpu_seconds(redis_proc.pid)
                peer = await arq_run(ctx, redis_url, target.url, processes, poll, n)
                peer_trips = per_job(before, await redis_counts(admin), n)
                redis_cpu = cpu_seconds(redis_proc.pid) - redis_cpu
                result.raw[f"arq_{processes}_{poll}"] = peer
                result.raw[f"arq_{processes}_{poll}_redis_per_job"] = peer_trips
                result.notes.append(
                    f"arq x{processes} poll_delay {poll}: {peer_trips['reads']:.2f} Redis round trips per job,"
                    f" {peer_trips['commands']:.2f} commands ({commands_note(peer_trips)}); redis-server's CPU per"
                    f" job {redis_cpu / n * 1e6:.0f} µs."
                )
                main = poll == ARQ_POLLS[-1]
                result.add(
                    f"HTTP-call jobs, {processes} poulpe process{'es' if processes > 1 else ''}",
                    mine,
                    "jobs/s",
                    f"arq, {processes} worker{'s' if processes > 1 else ''}, poll_delay {poll}",
                    peer,
                    target=f"≥ {RATIO_TARGET:.0f} times arq" if main else None,
                    met=at_least(mine / peer, RATIO_TARGET) if main else None,
                )
    finally:
        await admin.aclose()
    return result

"""10. Keys (flow control): HTTP-call jobs/s with 100 keys each limited to parallelism 10, beside the same run
without keys, on one process on SQLite and on three processes sharing one Redis; and due-time lateness with keys."""

from __future__ import annotations

import asyncio
import time

from bench import api
from bench.clients import start_target
from bench.context import Context
from bench.redis import start_redis, wait_redis
from bench.results import Result, at_least, at_most

NAME, TITLE = "keys", "Keys: flow control's cost"
WORKERS = 64  # per process
KEYS, PARALLELISM = 100, 10
RATIO_TARGET = 0.90
LATENESS_TARGET_MS = 5.0


async def run(ctx: Context, label: str, flags: tuple[str, ...], processes: int, target: str, n: int,
              keyed: bool, notes: list[str]) -> float:  # fmt: skip
    """Jobs/s from the first submit (batches of 1,000, round-robin over the processes) to the last final."""
    procs = [
        ctx.procs.poulpe(f"{label}-{i}", *flags, "--max_retry", "0", workers=WORKERS).start() for i in range(processes)
    ]
    for proc in procs:
        await asyncio.to_thread(proc.wait_http, "/health")
    async with api.session() as session:
        clients = [api.PoulpeClient(proc.url, session) for proc in procs]
        if keyed:
            for k in range(KEYS):
                async with session.put(f"{procs[0].url}/keys/k{k}", json={"parallelism": PARALLELISM}) as answer:
                    assert answer.status == 200, await answer.text()
        jobs = [
            {"method": "GET", "name": f"{target}/job", **({"key": f"k{i % KEYS}"} if keyed else {})}
            for i in range(1000)
        ]
        start = time.monotonic()
        for i, first in enumerate(range(0, n, 1000)):
            await clients[i % processes].submit(jobs[: min(1000, n - first)])
        end = await clients[0].wait_finished(n, within=ctx.pick(300, 60), interval=0.05)
        failed = int((await clients[0].get("/sys_info"))["today"]["failed"])
        clients[0].report_errors(notes, label)
    for proc in procs:
        proc.stop()
    if failed:
        notes.append(f"{label}: {failed} jobs failed.")
    return n / (end - start)


async def lateness(ctx: Context, label: str, flags: tuple[str, ...], target: str, n: int, keyed: bool) -> float:
    """p99 of (start - due time), ms, for jobs due at spread times while workers are free."""
    proc = ctx.procs.poulpe(label, *flags, "--max_retry", "0", workers=WORKERS).start()
    await asyncio.to_thread(proc.wait_http, "/health")
    async with api.session() as session:
        client = api.PoulpeClient(proc.url, session)
        for k in range(KEYS):
            async with session.put(f"{proc.url}/keys/k{k}", json={"parallelism": PARALLELISM}):
                pass
        now = time.time()
        jobs = [
            {"method": "GET", "name": f"{target}/job", "at": now + 1.0 + i * 2.0 / n}
            | ({"key": f"k{i % KEYS}"} if keyed else {})
            for i in range(n)
        ]
        await client.submit(jobs)
        await client.wait_finished(n, within=60, interval=0.1)
        done = await client.succeeded_jobs(n)
    proc.stop()
    late = sorted((job["started_at"] - job["run_at"]) * 1000 for job in done)
    return late[min(len(late) - 1, int(len(late) * 0.99))]


async def measure(ctx: Context) -> Result:
    n = ctx.pick(20_000, 3_000)
    result = Result(
        NAME,
        TITLE,
        f"{n:,} immediate GET jobs to bench/target.py posted in batches of 1,000 (round-robin over the processes),"
        f" --workers {WORKERS} per process; the clock runs from the first submit until /sys_info (polled every"
        f" 0.05 s) counts them all ended. With keys: the jobs are spread over {KEYS} keys, each limited by"
        f" PUT /keys/{{key}} to parallelism {PARALLELISM}; without: no key. Lateness: 500 jobs due at times"
        " spread over 2 s, workers free, with keys and without; p99 of start minus due time.",
    )
    target = await start_target(ctx)
    runs: list[tuple[str, tuple[str, ...], int]] = [("SQLite, 1 process", (), 1)]
    redis_proc = start_redis(ctx)
    redis_url = f"redis://127.0.0.1:{redis_proc.port}/0"
    admin = await wait_redis(redis_url)
    runs.append(("Redis, 3 processes", ("--redis", redis_url), 3))
    for label, flags, processes in runs:
        figures = {}
        for keyed in (False, True):
            await admin.flushall()
            name = f"{'keys' if keyed else 'plain'}-{processes}"
            ctx.log(f"{label}, {'with' if keyed else 'without'} keys")
            figures[keyed] = await run(ctx, name, flags, processes, target.url, n, keyed, result.notes)
            result.raw[name] = figures[keyed]
        result.add(
            f"HTTP-call jobs, {KEYS} keys x parallelism {PARALLELISM}, {label}",
            figures[True],
            "jobs/s",
            "the same without keys",
            figures[False],
            target=f"≥ {RATIO_TARGET:.0%} of no keys",
            met=at_least(figures[True] / figures[False], RATIO_TARGET),
        )
    for label, flags, _ in [*runs[:1], ("Redis, 1 process", ("--redis", redis_url), 1)]:
        await admin.flushall()
        ctx.log(f"lateness, {label}")
        p99 = await lateness(ctx, f"late-{label[:5]}", flags, target.url, ctx.pick(500, 200), True)
        await admin.flushall()
        plain = await lateness(ctx, f"late-plain-{label[:5]}", flags, target.url, ctx.pick(500, 200), False)
        result.raw[f"lateness_p99_ms {label}"] = p99
        result.raw[f"lateness_p99_ms {label} without keys"] = plain
        result.add(
            f"due-time lateness p99 with keys, {label}",
            p99,
            "ms",
            "the same without keys",
            plain,
            target=f"≤ {LATENESS_TARGET_MS:g} ms",
            met=at_most(p99, LATENESS_TARGET_MS),
        )
    await admin.aclose()
    return result

"""The peer of bench/redis.py: arq running the same job as poulpe, an HTTP GET to bench/target.py.

arq needs redis-py < 6, so it lives in a venv of its own (.venv-arq, made by bench/run.sh) and both of its sides
run from there: the workers (`arq bench.arq_peer.WorkerSettings`, configured by BENCH_REDIS, BENCH_MAX_JOBS and
BENCH_POLL_DELAY) and the producer (`python -m bench.arq_peer --n N --url URL`), which enqueues the jobs 1,000 at a
time, waits until the workers counted them all done (one INCR per job), and prints {"jobs_per_s": ...} as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from typing import Any

import aiohttp
from arq import create_pool
from arq.connections import RedisSettings

DONE_KEY = "bench:arq:done"
REDIS = RedisSettings.from_dsn(os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/0"))


async def startup(ctx: dict[str, Any]) -> None:
    ctx["http"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))


async def shutdown(ctx: dict[str, Any]) -> None:
    await ctx["http"].close()


async def get(ctx: dict[str, Any], url: str) -> int:
    async with ctx["http"].get(url) as response:
        await response.read()
        status = response.status
    await ctx["redis"].incr(DONE_KEY)
    return status


class WorkerSettings:
    functions = [get]
    on_startup = startup
    on_shutdown = shutdown
    redis_settings = REDIS
    max_jobs = int(os.environ.get("BENCH_MAX_JOBS", "64"))
    poll_delay = float(os.environ.get("BENCH_POLL_DELAY", "0.5"))
    keep_result = 60
    max_tries = 1


async def produce(n: int, url: str, within: float) -> float:
    pool = await create_pool(REDIS)
    start = time.monotonic()
    for first in range(0, n, 1000):
        await asyncio.gather(*(pool.enqueue_job("get", url) for _ in range(min(1000, n - first))))
    while int(await pool.get(DONE_KEY) or 0) < n:
        if time.monotonic() - start > within:
            raise TimeoutError(f"arq ran only {int(await pool.get(DONE_KEY) or 0)} of {n} jobs in {within:.0f} s")
        await asyncio.sleep(0.05)
    elapsed = time.monotonic() - start
    await pool.aclose()
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--within", type=float, default=600)
    args = parser.parse_args()
    print(json.dumps({"jobs_per_s": asyncio.run(produce(args.n, args.url, args.within))}))


if __name__ == "__main__":
    main()

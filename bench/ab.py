"""A/B of poulpe's CPU per HTTP-call job between source trees, interleaved (not a report measurement).

`python -m bench.ab --rounds 4 --jobs 20000 A=/path/to/tree B=/path/to/other` (each tree holds a `poulpe/`
package: a checkout, or `git archive <commit> poulpe | tar -x -C <dir>`). Each round runs the raw aiohttp client
once, then every tree in turn (the order reversed each round, so a machine that quietens or gets busier favours
none): a fresh poulpe (SQLite, --workers 64, --max_retry 0) takes the e2e run's jobs, GETs to bench/target.py
posted in batches of 1,000. Printed per run: jobs/s, poulpe's CPU µs per job (all threads), that less the raw
client's µs per request of the same round (the machinery), the event loop's thread and the other threads apart,
and the load average; then each tree's median machinery.

On a shared machine a single run moves by ±15 µs: compare medians of several rounds, and the other threads'
figure (the SQLite writer) apart from the loop's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench import api
from bench.clients import raw_client, start_target
from bench.context import Context
from bench.procs import Proc, Procs, cpu_seconds, free_port

WORKERS = 64


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of each thread of a process, by thread id."""
    out: dict[str, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended
            continue
        out[tid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def start_poulpe(ctx: Context, tree: Path, tag: str) -> Proc:
    home = Path(tempfile.mkdtemp(prefix=f"{tag}-", dir=ctx.workdir))
    port = free_port()
    args = [sys.executable, "-m", "poulpe", "--port", str(port), "--data", str(home / "poulpe.db")]
    args += ["--dead", str(home / "dead"), "--workers", str(WORKERS), "--grace", "2", "--max_retry", "0"]
    # `python -m` puts the working directory first on sys.path: poulpe is imported from the tree, whatever the
    # bench's own directory or PYTHONPATH
    here = Path.cwd()
    os.chdir(tree)
    try:
        return Proc(tag, args, home / "poulpe.log", port=port).start()
    finally:
        os.chdir(here)


async def one_run(ctx: Context, tree: Path, tag: str, target_url: str, n: int) -> tuple[float, float, float, float]:
    """Jobs/s, and CPU µs per job: all threads, the event loop's thread, the other threads."""
    poulpe = start_poulpe(ctx, tree, tag)
    try:
        await asyncio.to_thread(poulpe.wait_http, "/health")
        job = {"method": "GET", "name": f"{target_url}/job"}
        async with api.session() as session:
            client = api.PoulpeClient(poulpe.url, session)
            start, cpu, threads = time.monotonic(), cpu_seconds(poulpe.pid), thread_cpu(poulpe.pid)
            await client.submit_copies(job, n)
            end = await client.wait_finished(n, within=300)
            cpu, after = cpu_seconds(poulpe.pid) - cpu, thread_cpu(poulpe.pid)
        loop = after[str(poulpe.pid)] - threads.get(str(poulpe.pid), 0.0)
        return n / (end - start), cpu / n * 1e6, loop / n * 1e6, (cpu - loop) / n * 1e6
    finally:
        poulpe.stop()


async def main(trees: dict[str, Path], rounds: int, n: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="poulpe-bench-ab-"))
    ctx = Context(quick=False, workdir=workdir, procs=Procs(workdir))
    machinery: dict[str, list[float]] = {tag: [] for tag in trees}
    try:
        target = await start_target(ctx)
        for round_ in range(rounds):
            raw = await raw_client(ctx, target, "aiohttp", n, 60)
            raw_us = raw["cpu_s"] / raw["done"] * 1e6
            for tag in list(trees) if round_ % 2 == 0 else list(reversed(trees)):
                load = os.getloadavg()[0]
                rate, per_job, loop, others = await one_run(ctx, trees[tag], tag, target.url, n)
                machinery[tag].append(per_job - raw_us)
                print(
                    f"round {round_} {tag}: {rate:,.0f} jobs/s, {per_job:.0f} µs/job (loop {loop:.0f}, other threads"
                    f" {others:.0f}), raw client {raw_us:.0f} µs/request, machinery {per_job - raw_us:.0f};"
                    f" load {load:.1f}",
                    flush=True,
                )
        for tag, values in machinery.items():
            print(
                f"{tag}: machinery median {statistics.median(values):.0f} µs ({', '.join(f'{v:.0f}' for v in values)})"
            )
    finally:
        ctx.procs.close()


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("trees", nargs="+", metavar="TAG=DIR", help="a name and a directory holding poulpe/")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=20_000)
    args = parser.parse_args()
    args.trees = {tag: Path(path).resolve() for tag, _, path in (tree.partition("=") for tree in args.trees)}
    for tag, path in args.trees.items():
        if not (path / "poulpe" / "__init__.py").exists():
            parser.error(f"{tag}: {path} holds no poulpe package")
    return args


if __name__ == "__main__":
    arguments = parse()
    asyncio.run(main(arguments.trees, arguments.rounds, arguments.jobs))

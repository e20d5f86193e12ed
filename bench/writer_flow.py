"""The SQLite writer thread under a steady flow of outcomes: CPU per job and jobs per commit (not a report
measurement).

`python -m bench.writer_flow [--jobs 20000] [--rate 6500] [--rounds 3]`: a SqliteStore on a file takes the jobs
(batches of 1,000), then their outcomes are saved with `save_many` at `--rate` a second in small groups, as the
finish step hands them over while workers end attempts (about the e2e run's rate on a quiet machine). Each round
runs with the writer's wait for more outcomes (`sqlite_writer.LINGER`) and without it (0), the order swapping.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from poulpe.job import Job, Method, Status
from poulpe.store import sqlite_writer
from poulpe.store.sqlite import SqliteStore
from poulpe.validate import new_id

RESULT = {"status_code": 200, "headers": {"Content-Type": "text/plain", "Content-Length": "2"}, "body": "ok"}


def thread_cpu(tid: int) -> float:
    fields = Path(f"/proc/{os.getpid()}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def one(folder: Path, n: int, rate: float) -> tuple[float, float]:
    """The writer thread's CPU µs per job for the outcomes, and jobs per commit."""
    store = SqliteStore(folder / f"{time.monotonic_ns()}.db")
    await store.open()
    writer = store._writer
    assert writer is not None and writer.native_id is not None
    now = time.time()
    jobs = [
        Job(id=new_id(), method=Method.GET, name="http://127.0.0.1:8000/job", seq=i + 1, created_at=now, run_at=now)
        for i in range(n)
    ]
    for first in range(0, n, 1000):
        await store.add(jobs[first : first + 1000])
    for job in jobs:
        job.begin_attempt(3, "node:1", now + 0.001)
        job.end_attempt(True, None, now + 0.002)
        job.result, job.status, job.finished_at = RESULT, Status.SUCCEEDED, now + 0.002
    batches, cpu, start = writer.batches, thread_cpu(writer.native_id), time.monotonic()
    saves, done = [], 0
    while done < n:
        due = min(int((time.monotonic() - start) * rate), n)
        if due > done:
            saves.append(asyncio.ensure_future(store.save_many(jobs[done:due])))
            done = due
        await asyncio.sleep(0.0005)
    await asyncio.gather(*saves)
    cpu, commits = thread_cpu(writer.native_id) - cpu, writer.batches - batches
    await store.close()
    return cpu / n * 1e6, n / commits


async def main(n: int, rate: float, rounds: int) -> None:
    linger = sqlite_writer.LINGER
    cases = {f"wait {linger * 1000:g} ms": linger, "no wait": 0.0}
    cpu: dict[str, list[float]] = {case: [] for case in cases}
    with tempfile.TemporaryDirectory(prefix="poulpe-writer-flow-") as folder:
        for round_ in range(rounds):
            for case in list(cases) if round_ % 2 == 0 else list(reversed(cases)):
                sqlite_writer.LINGER = cases[case]
                us, per_commit = await one(Path(folder), n, rate)
                cpu[case].append(us)
                print(f"round {round_} {case}: writer {us:.1f} µs of CPU per job, {per_commit:.1f} jobs a commit")
    print(f"load average {os.getloadavg()[0]:.1f}; the writer's median CPU µs per job at {rate:,.0f} outcomes/s:")
    for case, values in cpu.items():
        print(f"  {case:<12} {statistics.median(values):5.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=6_500, help="outcomes saved a second")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.jobs, args.rate, args.rounds))

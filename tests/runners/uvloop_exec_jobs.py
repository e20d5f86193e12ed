"""Runs quick EXEC jobs one after another under uvloop, on this process's main thread: `python -m
tests.runners.uvloop_exec_jobs EXEC_DIR COUNT`. tests/runners/test_exec_uvloop.py watches its closes with strace;
one line per job on stdout says whether the attempt succeeded."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import uvloop

from poulpe.job import Job, Method
from poulpe.runners.exec import ExecRunner


async def run_jobs(exec_dir: Path, count: int) -> None:
    runner = ExecRunner(exec_dir=exec_dir)
    for n in range(count):
        outcome = await runner.run(Job(id=f"j{n}", method=Method.EXEC, name="true"), 1, 30)
        print(f"job {n}: {'ok' if outcome.ok else outcome.error}", flush=True)


if __name__ == "__main__":
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(run_jobs(Path(sys.argv[1]), int(sys.argv[2])))

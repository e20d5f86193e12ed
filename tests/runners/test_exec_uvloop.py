"""EXEC jobs under `--loop uvloop`: the runner closes each output pipe once, and never a file someone else opened."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import threading
from pathlib import Path

import uvloop

from poulpe.job import Job, Method
from poulpe.runners.exec import ExecRunner


def test_quick_programs_under_uvloop_leave_other_threads_files_alone(tmp_path: Path) -> None:
    """The store's thread opens files while EXEC jobs end. uvloop's pipe transport closed a pipe's fd twice (libuv,
    then the file object): an fd opened by another thread between the two closes was lost, which the bench saw as a
    /sys_info answering 500 (SQLite: "disk I/O error") and EXEC attempts failing with EBADF or EEXIST."""
    exec_dir = tmp_path / "bin"
    exec_dir.mkdir()
    shutil.copy("/bin/true", exec_dir / "true")
    runner = ExecRunner(exec_dir=exec_dir)
    witness = tmp_path / "witness"
    witness.write_bytes(b"still mine")
    broken: list[str] = []
    done = threading.Event()

    def keep_opening_files() -> None:  # stands for the store's thread
        while not done.is_set():
            fd = os.open(witness, os.O_RDONLY)
            try:
                if os.pread(fd, 32, 0) != b"still mine":
                    broken.append(f"fd {fd} now reads another file")
            except OSError as exc:
                broken.append(f"fd {fd} closed under the thread that opened it: {exc}")
                continue
            try:
                os.close(fd)
            except OSError as exc:
                broken.append(f"fd {fd} closed under the thread that opened it: {exc}")

    async def worker(jobs: list[int]) -> None:
        while jobs:
            n = jobs.pop()
            outcome = await runner.run(Job(id=f"j{n}", method=Method.EXEC, name="true"), 1, 30)
            if not outcome.ok:
                broken.append(f"job {n}: {outcome.error}")

    async def main() -> None:
        jobs = list(range(500))
        # 500 jobs take about 10 s on a quiet machine; on a loaded one the test stops after 60 s of them, well
        # before the per-test timeout, so the loop always ends cleanly (a loop cut by the timeout upsets later tests)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(60):
                await asyncio.gather(*(worker(jobs) for _ in range(8)))
        assert len(jobs) < 400, "too few programs ran to show anything"

    openers = [threading.Thread(target=keep_opening_files) for _ in range(2)]
    for opener in openers:
        opener.start()
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as run:
            run.run(main())
    finally:
        done.set()
        for opener in openers:
            opener.join()
    assert broken == []

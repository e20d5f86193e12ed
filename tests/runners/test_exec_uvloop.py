"""EXEC jobs under `--loop uvloop`: the runner closes each output pipe once, and never a file someone else opened."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]
JOBS = 20


def test_quick_programs_under_uvloop_close_each_output_pipe_once(tmp_path: Path) -> None:
    """uvloop's pipe transport closed a pipe's fd twice (libuv, then the file object): an fd another thread (the
    store's) opened between the two closes was lost, which the bench saw as a /sys_info answering 500 (SQLite: "disk
    I/O error") and EXEC attempts failing with EBADF or EEXIST. Whether another thread wins that race is luck; the
    second close itself is not. strace watches a process that runs EXEC jobs on its one thread: a second close of a
    pipe's fd, with nothing opened in between, is a close that fails with EBADF."""
    strace = shutil.which("strace")
    assert strace, "strace is missing: ./scripts/test.sh installs it (Debian package strace)"
    exec_dir = tmp_path / "bin"
    exec_dir.mkdir()
    shutil.copy("/bin/true", exec_dir / "true")
    trace = tmp_path / "trace"
    ran = subprocess.run(
        [strace, "-qq", "-o", str(trace), "-e", "trace=close,pipe2",
         sys.executable, "-m", "tests.runners.uvloop_exec_jobs", str(exec_dir), str(JOBS)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines() == [f"job {n}: ok" for n in range(JOBS)]

    pipe_fds: set[int] = set()
    closes_failed: list[str] = []
    for line in trace.read_text().splitlines():
        if made := re.match(r"pipe2\(\[(\d+), (\d+)\]", line):
            pipe_fds.update(int(fd) for fd in made.groups())
        elif (closed := re.match(r"close\((\d+)\)\s+= -1 EBADF", line)) and int(closed[1]) in pipe_fds:
            closes_failed.append(line)
    assert len(pipe_fds) >= 2, "strace saw no pipe made: the trace shows nothing"
    assert closes_failed == []

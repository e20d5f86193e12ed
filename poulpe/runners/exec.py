"""EXEC jobs (SPEC 4): a program of --exec_dir, run without a shell, in its own process group, output capped.

The program's own exit status judges the attempt; nothing it started outlives it (poulpe/runners/leftovers.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import stat
import time
from pathlib import Path
from typing import Any

from poulpe.checks import Limits
from poulpe.errors import BadRequest
from poulpe.job import Job, Method
from poulpe.runners import BODY_CAP, Outcome
from poulpe.runners.leftovers import JobProcesses, become_subreaper

SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
READ_CHUNK = 65536  # bytes read from an output pipe at a time
PIPE_GRACE = 0.5  # once the program and its leftovers are gone, how long its output may still take to arrive


def resolve_program(exec_dir: Path, name: str) -> Path:
    """The real path of program `name`; ValueError (one sentence) unless it is an executable regular file in exec_dir.

    Run again before each attempt: a symlink swapped after intake must not lead out of exec_dir.
    """
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise ValueError("name must be the plain file name of a program in --exec_dir (no '/', '.' or '..')")
    root = os.path.realpath(exec_dir)
    real = os.path.realpath(os.path.join(root, name))
    if os.path.commonpath([root, real]) != root:
        raise ValueError(f"program {name!r} leads outside --exec_dir")
    try:
        mode = os.stat(real).st_mode
    except FileNotFoundError:
        raise ValueError(f"no program named {name!r} in --exec_dir") from None
    except OSError as exc:
        raise ValueError(f"program {name!r} cannot be used: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise ValueError(f"program {name!r} is not a regular file")
    if not os.access(real, os.X_OK):
        raise ValueError(f"program {name!r} is not executable")
    return Path(real)


def split_args(params: Any) -> list[str]:
    """EXEC params as argv: a string split as a shell would (quotes respected, nothing expanded) or a list of strings.

    Every message names "arguments": the intake validator reports them on the `params` field.
    """
    if params is None:
        args: list[str] = []
    elif isinstance(params, str):
        try:
            args = shlex.split(params)
        except ValueError as exc:
            raise ValueError(f"arguments cannot be split: {str(exc).lower()}") from None
    elif isinstance(params, list) and all(isinstance(arg, str) for arg in params):
        args = list(params)
    else:
        raise ValueError("arguments must be a string or an array of strings")
    if any("\0" in arg for arg in args):
        raise ValueError("arguments must not contain NUL characters")
    return args


def check(method: Method, name: str, params: Any, limits: Limits) -> None:
    """An EXEC job's rules at intake: EXEC is on, the program is in --exec_dir, the arguments split."""
    if limits.exec_dir is None:
        raise BadRequest("EXEC is disabled: poulpe runs without --exec_dir", "method")
    try:
        resolve_program(limits.exec_dir, name)
    except ValueError as exc:
        raise BadRequest(str(exc), "name") from None
    try:
        split_args(params)
    except ValueError as exc:
        raise BadRequest(str(exc), "params") from None


class _Capture:
    """One output pipe: keeps its first BODY_CAP bytes and drops the rest as it arrives (memory stays bounded).

    Read through `loop.add_reader`, so the runner alone owns the fd and closes it exactly once. A pipe transport
    would own it too: uvloop's closes a pipe's fd twice (libuv, then the file object), and a file another thread
    opened in between (SQLite's journal, the store's) lost its fd: docs/design.md, "EXEC under uvloop".
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.data = bytearray()
        self.loop = asyncio.get_running_loop()
        self.closed: asyncio.Future[None] = self.loop.create_future()
        try:
            os.set_blocking(fd, False)
            self.loop.add_reader(fd, self._read)
        except BaseException:
            self.fd = -1
            os.close(fd)
            raise

    def _read(self) -> None:
        try:
            chunk = os.read(self.fd, READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:  # every writer closed its end
            self.close()
            return
        room = BODY_CAP - len(self.data)
        if room > 0:
            self.data += chunk[:room]

    def close(self) -> None:
        """Stop reading and close the fd; the second call does nothing."""
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            self.loop.remove_reader(fd)
            os.close(fd)
        if not self.closed.done():
            self.closed.set_result(None)

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


class ExecRunner:
    """Runs EXEC jobs. When the program exits or times out, every process of the job gets SIGTERM, then SIGKILL after
    `kill_after` s (poulpe/runners/leftovers.py finds them, in the program's group or not)."""

    def __init__(self, *, exec_dir: Path, kill_after: float = 5.0) -> None:
        self.exec_dir = Path(os.path.realpath(exec_dir))
        self.kill_after = kill_after
        self.leaders: set[int] = set()  # the programs running now: poulpe's only children but leftovers
        become_subreaper()

    async def close(self) -> None:
        return None

    async def run(self, job: Job, attempt: int, timeout: float) -> Outcome:  # noqa: ASYNC109 (the Runner protocol)
        start = time.perf_counter()
        try:
            program = resolve_program(self.exec_dir, job.name)
            args = split_args(job.params)
        except ValueError as exc:
            return Outcome(ok=False, final=True, error=str(exc))
        env = {"PATH": SAFE_PATH, "LANG": "C.UTF-8", "POULPE_JOB_ID": job.id, "POULPE_ATTEMPT": str(attempt)}
        # Our own pipes, not asyncio's PIPE: a grandchild that escapes the group and keeps them open cannot make
        # us wait, because we close our ends ourselves once the attempt is over.
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            proc = await asyncio.create_subprocess_exec(
                program, *args, cwd=self.exec_dir, env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=out_w, stderr=err_w, start_new_session=True,
            )  # fmt: skip
        except BaseException as exc:
            os.close(out_r)
            os.close(err_r)
            if not isinstance(exc, OSError):
                raise
            return Outcome(ok=False, final=True, error=f"program {job.name!r} could not start: {exc.strerror or exc}")
        finally:
            os.close(out_w)
            os.close(err_w)
        try:
            out = _Capture(out_r)
        except BaseException:
            os.close(err_r)
            raise
        try:
            err = _Capture(err_r)
        except BaseException:
            out.close()
            raise
        self.leaders.add(proc.pid)
        try:
            code, timed_out = await self._watch(proc, job, attempt, timeout, out, err)
        finally:
            self.leaders.discard(proc.pid)
        result = {
            "exit_code": code,
            "stdout": out.text(),
            "stderr": err.text(),
            "elapsed_ms": round((time.perf_counter() - start) * 1000, 3),
        }
        if timed_out:
            return Outcome(ok=False, result=result, error=f"timed out after {timeout:g}s")
        if code == 0 and job.fail_on_stderr and err.data:
            return Outcome(ok=False, result=result, error=_stderr_error(err.text()))
        if code == 0:
            return Outcome(ok=True, result=result)
        return Outcome(ok=False, result=result, error=_exit_error(code, err.text()))

    async def _watch(self, proc: asyncio.subprocess.Process, job: Job, attempt: int, seconds: float,
                     out: _Capture, err: _Capture) -> tuple[int, bool]:  # fmt: skip
        """Exit code and whether the attempt timed out. The program's own exit decides; whatever it started ends
        with it, and its output is read until its pipes close or, when leftovers hold them, for a short moment."""
        processes = JobProcesses(proc.pid, job.id, attempt)
        try:
            timed_out = False
            try:
                async with asyncio.timeout(seconds):
                    await proc.wait()
            except TimeoutError:
                timed_out = True
            if timed_out or not processes.nothing_left(self.leaders - {proc.pid}):
                await processes.end(self.kill_after)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await proc.wait()
            await asyncio.wait([out.closed, err.closed], timeout=PIPE_GRACE)
            if proc.returncode is None:  # cannot happen after SIGKILL, unless the kernel is stuck
                return -signal.SIGKILL, timed_out
            return proc.returncode, timed_out
        except BaseException:  # cancelled (shutdown): leave nothing running behind us
            processes.signal(signal.SIGKILL)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await proc.wait()
            await processes.reap()
            raise
        finally:
            out.close()  # a no-op when the pipe ended already
            err.close()


def _stderr_error(stderr: str) -> str:
    first = next((line.strip() for line in stderr.splitlines() if line.strip()), "")
    return f"the program wrote on stderr: {first[:200]}" if first else "the program wrote on stderr"


def _exit_error(code: int, stderr: str) -> str:
    error = f"exit code {code}"
    if code < 0:
        with contextlib.suppress(ValueError):
            error += f" ({signal.Signals(-code).name})"
    first = next((line.strip() for line in stderr.splitlines() if line.strip()), "")
    return f"{error}: {first[:200]}" if first else error

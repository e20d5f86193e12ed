"""The processes a measurement starts: poulpe, the bare ceiling app, the fast target and the client processes.

Every one is a real subprocess on a loopback port of its own, logs to a file in the measurement's work dir,
dies with the bench (PR_SET_PDEATHSIG) and is stopped by `Procs.close()` even when the measurement fails.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

NOFILE = 65536
PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def raise_nofile(limit: int = NOFILE) -> None:
    """Raise RLIMIT_NOFILE (root may raise the hard limit too; others get what the hard limit allows)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, limit)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))


def _child_setup() -> None:
    # Runs in the child between fork and exec: die with the bench, and allow many sockets (10,000 long-polls).
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    raise_nofile()


def poulpe_command() -> list[str]:
    exe = shutil.which("poulpe", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "poulpe"]


def rss_bytes(pid: int) -> int:
    """VmRSS of a process, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def http_status(port: int, path: str, timeout: float = 1.0) -> int | None:
    """The status of a GET on loopback, or None when nothing answers (yet)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


class Proc:
    """One server or client process. `log` holds its stdout and stderr."""

    def __init__(self, name: str, args: Sequence[str], log: Path, *, port: int | None = None) -> None:
        self.name = name
        self.args = list(args)
        self.log = log
        self.port = port
        self.popen: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, stdout_pipe: bool = False) -> Proc:
        with open(self.log, "ab") as log:
            self.started_at = time.monotonic()
            self.popen = subprocess.Popen(
                self.args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if stdout_pipe else log,
                stderr=log,
                preexec_fn=_child_setup,
            )
        return self

    def wait_http(self, path: str = "/", *, timeout: float = 30.0, interval: float = 0.01) -> float:
        """Poll until GET `path` answers 200; returns the seconds since the process was started."""
        assert self.popen is not None and self.port is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{self.tail()}")
            if http_status(self.port, path) == 200:
                return time.monotonic() - self.started_at
            time.sleep(interval)
        raise RuntimeError(f"{self.name} did not answer 200 on {path} within {timeout:.0f} s:\n{self.tail()}")

    def rss(self) -> int:
        return rss_bytes(self.pid)

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill9(self) -> None:
        if self.alive():
            assert self.popen is not None
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(10)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL when it has not exited within `timeout` seconds."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        if self.popen.stdout is not None:
            self.popen.stdout.close()

    def tail(self, lines: int = 30) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


class Procs:
    """The processes of one measurement, stopped together (in reverse order of start) by `close()`."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._procs: list[Proc] = []

    def _add(self, proc: Proc) -> Proc:
        self._procs.append(proc)
        return proc

    def poulpe(self, name: str = "poulpe", *flags: str, loop: str = "asyncio", workers: int = 8) -> Proc:
        """A poulpe with its own data file and dead-letter dir under the work dir; not started yet."""
        home = self.workdir / name
        home.mkdir(parents=True, exist_ok=True)
        port = free_port()
        args = [
            *poulpe_command(),
            *("--port", str(port), "--data", str(home / "poulpe.db"), "--dead", str(home / "dead")),
            *("--loop", loop, "--workers", str(workers), "--grace", "2", *flags),
        ]
        return self._add(Proc(name, args, home / "poulpe.log", port=port))

    def respawn(self, proc: Proc) -> Proc:
        """The same command again (same port and files), e.g. after a kill -9."""
        return self._add(Proc(proc.name, proc.args, proc.log, port=proc.port))

    def module(self, name: str, module: str, *args: str, port: int | None = None) -> Proc:
        """`python -m bench.<module> args`: the bare app, the target, a client."""
        argv = [sys.executable, "-m", f"bench.{module}", *args]
        return self._add(Proc(name, argv, self.workdir / f"{name}.log", port=port))

    def bare(self, loop: str = "asyncio") -> Proc:
        port = free_port()
        return self.module(f"bare-{loop}", "bare_app", "--port", str(port), "--loop", loop, port=port)

    def target(self) -> Proc:
        port = free_port()
        return self.module("target", "target", "--port", str(port), port=port)

    def close(self, on_error: Callable[[Proc, BaseException], None] | None = None) -> None:
        for proc in reversed(self._procs):
            try:
                proc.stop()
            except Exception as exc:  # keep stopping the others
                if on_error is not None:
                    on_error(proc, exc)
        self._procs.clear()

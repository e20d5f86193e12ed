"""poulpe run the way a user runs it: the `poulpe` command as a subprocess on a free loopback port."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def poulpe_command() -> list[str]:
    exe = shutil.which("poulpe", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "poulpe"]


class Poulpe:
    """One poulpe process with its own data file and dead-letter directory under `home`.

    `start()` waits for /health; `kill()` is `kill -9`; `restart()` starts again on the same files. Everything the
    process logs goes to `home/poulpe.log`, so a test can grep it (for secrets, for transitions).
    """

    def __init__(self, home: Path, *flags: str, env: dict[str, str] | None = None, token: str | None = None) -> None:
        self.home = home
        self.flags = list(flags)
        self.env = env or {}
        self.token = token
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = home / "poulpe.log"
        home.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def args(self) -> list[str]:
        defaults = ["--port", str(self.port), "--data", str(self.home / "poulpe.db"), "--dead", str(self.home / "dead")]
        return [*poulpe_command(), *defaults, *self.flags]

    def start(self, timeout: float = 20.0, *, healthy: bool = True) -> Poulpe:
        """Start and wait until /health answers 200 (with `healthy=False`: until it answers at all)."""
        env = {**os.environ, **self.env}
        log = open(self.log_path, "ab")  # noqa: SIM115  (kept open by the child)
        self.proc = subprocess.Popen(self.args(), stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=1) as client:  # one client for every look: a new one costs an SSL context each
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"poulpe exited with {self.proc.returncode}:\n{self.log()}")
                try:
                    if client.get(f"{self.url}/health").status_code == 200 or not healthy:
                        return self
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
        raise RuntimeError(f"poulpe did not become healthy in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """kill -9: no drain, no goodbye."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def restart(self) -> Poulpe:
        self.kill()
        self.port = free_port()
        return self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def client(self, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=kwargs.pop("timeout", 60), **kwargs)

    def async_client(self, **kwargs: Any) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=kwargs.pop("timeout", 60), **kwargs)

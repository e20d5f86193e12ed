"""A real redis-server on a loopback port of its own, with AOF on (as the docs advise), for the tests.

Missing `redis-server` fails the test that needs it: ./scripts/test.sh installs Debian's package.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import redis

from tests.poulpe_process import free_port


class RedisServer:
    def __init__(
        self, home: Path, *, fsync: str = "everysec", replica_of: int | None = None, extra: Sequence[str] = ()
    ) -> None:
        self.home = home
        self.extra = list(extra)  # more redis-server options (a cluster node's)
        self.fsync = fsync  # `always`: each write is on disk before Redis answers it (and the answer comes later)
        self.replica_of = replica_of  # the port of the primary it replicates (asynchronously, as Redis does)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        home.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed (./scripts/test.sh installs Debian's redis-server)")
        args = [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.home), "--save", ""]
        args += ["--appendonly", "yes", "--appendfsync", self.fsync, "--daemonize", "no", "--protected-mode", "no"]
        args += ["--repl-diskless-sync-delay", "0"]  # a replica syncs at once, not 5 s later
        if self.replica_of is not None:
            args += ["--replicaof", "127.0.0.1", str(self.replica_of)]
        args += self.extra
        log = open(self.home / "redis.log", "ab")  # noqa: SIM115  (kept open by the child)
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    return self
            except redis.ConnectionError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def stop(self) -> None:
        """A clean shutdown (SIGTERM): Redis writes its AOF out before it exits."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None

    def kill(self) -> None:
        """kill -9: Redis gets no chance to answer what it was doing; `start()` brings it back on its port and AOF."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port)


class Sentinel:
    """A Redis Sentinel (`redis-server --sentinel`) watching `master` under the service name `mymaster`."""

    def __init__(self, home: Path, master: RedisServer, *, down_after_ms: int = 30000) -> None:
        self.home = home
        self.port = free_port()
        self.master = master
        self.down_after_ms = down_after_ms  # a primary silent this long is failed over to one of its replicas
        self.proc: subprocess.Popen[bytes] | None = None
        home.mkdir(parents=True, exist_ok=True)

    def start(self) -> Sentinel:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed (./scripts/test.sh installs Debian's redis-server)")
        config = self.home / "sentinel.conf"
        config.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.home}\n"
            f"sentinel monitor mymaster 127.0.0.1 {self.master.port} 1\n"
            f"sentinel down-after-milliseconds mymaster {self.down_after_ms}\n"
            f"sentinel failover-timeout mymaster {max(3000, 3 * self.down_after_ms)}\n"
        )
        log = open(self.home / "sentinel.log", "ab")  # noqa: SIM115  (kept open by the child)
        self.proc = subprocess.Popen([exe, str(config), "--sentinel"], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if client.execute_command("SENTINEL", "get-master-addr-by-name", "mymaster"):
                    return self
            except redis.ConnectionError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"redis sentinel did not answer on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None

    def primary_port(self) -> int:
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        _, port = client.execute_command("SENTINEL", "get-master-addr-by-name", "mymaster")
        return int(port)

"""A real Redis Cluster on loopback for the tests: 6 redis-server nodes (`--cluster-enabled yes`), 3 primaries and
3 replicas, joined by `redis-cli --cluster create`, with a 1 s node timeout so a fail-over takes seconds."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis
from redis.crc import key_slot

from tests.redis_server import RedisServer


def cluster_port() -> int:
    """A free port with its cluster bus port (10,000 above it) free too; Redis wants it 55535 at most."""
    for _ in range(1000):
        port = random.randint(20000, 55535)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


class LocalCluster:
    def __init__(self, home: Path, size: int = 6) -> None:
        options = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "1000"]
        self.nodes = [RedisServer(home / f"node{n}", extra=options) for n in range(size)]
        for node in self.nodes:
            node.port = cluster_port()

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes[:3]) + "/"

    def start(self) -> LocalCluster:
        exe = shutil.which("redis-cli")
        if exe is None:
            raise RuntimeError("redis-cli is not installed (./scripts/test.sh installs Debian's redis-server)")
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run([exe, "--cluster", "create", *addresses, "--cluster-replicas", "1", "--cluster-yes"],
                       check=True, capture_output=True, timeout=60)  # fmt: skip
        self.wait_ok()
        return self

    def wait_ok(self, timeout: float = 30) -> None:
        """Until every node that runs says the cluster is ok and knows who serves every slot."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if all(n.client().cluster("info")["cluster_state"] == "ok" for n in self.nodes if n.proc):
                    return
            except redis.RedisError:
                pass
            time.sleep(0.1)
        raise RuntimeError("the redis cluster did not become ok")

    def owner(self, key: str) -> RedisServer:
        """The node serving `key`'s slot now, as the running nodes see it."""
        slot = key_slot(key.encode())
        for node in self.nodes:
            if node.proc is None:
                continue
            for start, end, primary, *_ in node.client().execute_command("CLUSTER", "SLOTS"):
                if int(start) <= slot <= int(end):
                    return next(n for n in self.nodes if n.port == int(primary[1]))
        raise RuntimeError(f"no node serves slot {slot}")

    def primaries(self) -> list[RedisServer]:
        return [n for n in self.nodes if n.proc is not None and n.client().info("replication")["role"] == "master"]

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

"""A Redis primary dies under poulpe and Sentinel promotes its replica: poulpe follows without a restart, and with
`--redis_replicas 1` nothing it acknowledged is lost (Redis replication alone is asynchronous: what the primary took
last may never reach the replica)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e.helpers import eventually, result
from tests.poulpe_process import Poulpe
from tests.redis_proxy import RedisProxy
from tests.redis_server import RedisServer, Sentinel
from tests.target import Target

Start = Callable[..., Poulpe]


@dataclass
class Pair:
    """A primary, its replica (linked through a proxy, so a test can cut replication) and a Sentinel watching them."""

    primary: RedisServer
    link: RedisProxy
    replica: RedisServer
    sentinel: Sentinel

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel.port}/mymaster/0"


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    primary = RedisServer(tmp_path / "primary").start()
    link = RedisProxy(primary.port).start()
    replica = RedisServer(tmp_path / "replica", replica_of=link.port).start()
    eventually(lambda: replica.client().info("replication")["master_link_status"] == "up")
    sentinel = Sentinel(tmp_path / "sentinel", primary, down_after_ms=1000).start()  # it finds the replica at once
    try:
        yield Pair(primary, link, replica, sentinel)
    finally:
        for server in (sentinel, replica, link, primary):
            server.stop()


class Stream:
    """Batches of 5 jobs posted every 50 ms from a few threads; the ids poulpe acknowledged (202)."""

    def __init__(self, proc: Poulpe, target: Target) -> None:
        self.proc, self.target = proc, target
        self.acked: list[str] = []
        self.refused = 0
        self.stopped = threading.Event()

    def post(self, thread: int) -> None:
        with self.proc.client(timeout=30) as client:
            for n in range(1_000_000):
                if self.stopped.is_set():
                    return
                batch = [{"id": f"fo-{thread}-{n}-{k}", "method": "GET", "name": self.target.url()} for k in range(5)]
                try:
                    answer = client.post("/task_in_queue", json=batch)
                except httpx.HTTPError:
                    answer = None
                if answer is not None and answer.status_code == 202:
                    self.acked += [job["id"] for job in batch]
                else:
                    self.refused += 1
                time.sleep(0.05)

    def grows(self, by: int, timeout: float = 30) -> None:
        start = len(self.acked)
        eventually(lambda: len(self.acked) >= start + by, timeout=timeout)


def test_a_killed_primary_loses_no_acknowledged_job_with_redis_replicas(
    poulpe: Start, pair: Pair, fresh_target: Target, tmp_path: Path
) -> None:
    proc = poulpe("--redis", pair.url, "--redis_replicas", "1", "--workers", "8", "--lease", "5")
    stream = Stream(proc, fresh_target)
    with ThreadPoolExecutor(4) as pool:
        for thread in range(4):
            pool.submit(stream.post, thread)
        stream.grows(100)
        pair.link.refuse()  # replication stops: what the primary takes from now on, its replica never gets
        time.sleep(1.0)
        pair.primary.kill()  # kill -9 mid-stream
        eventually(lambda: pair.sentinel.primary_port() == pair.replica.port, timeout=30)
        # the new primary has no replica: jobs are refused (503) until one attaches, then taken again
        eventually(lambda: stream.refused > 0, timeout=30)
        spare = RedisServer(tmp_path / "spare", replica_of=pair.replica.port).start()
        try:
            stream.grows(50)
        finally:
            stream.stopped.set()
            spare.stop()
    with proc.client(timeout=60) as client, ThreadPoolExecutor(16) as pool:  # the long-polls side by side
        finals = dict(
            zip(stream.acked, pool.map(lambda job_id: result(client, job_id)["status"], stream.acked), strict=True)
        )
    assert set(finals.values()) == {"succeeded"}, "every acknowledged job ran to the end on the new primary"
    ran = fresh_target.count_by_job_id()
    assert all(ran[job_id] >= 1 for job_id in stream.acked)

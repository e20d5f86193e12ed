"""poulpe on a real Redis Cluster (6 nodes on loopback: 3 primaries, 3 replicas): processes share the work, and a
primary killed with kill -9 mid-stream is followed to its promoted replica without a restart; with
`--redis_replicas 1`, nothing acknowledged is lost."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.e2e.helpers import eventually, result
from tests.e2e.test_redis_failover import Stream
from tests.poulpe_process import Poulpe
from tests.redis_cluster import LocalCluster
from tests.target import Target

Start = Callable[..., Poulpe]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    started = LocalCluster(tmp_path / "cluster").start()
    try:
        yield started
    finally:
        started.stop()


def counts(proc: Poulpe) -> dict[str, int]:
    with proc.client() as client:
        answer: dict[str, int] = client.get("/sys_info").json()["counts"]
    return answer


def test_two_processes_on_a_cluster_run_two_thousand_jobs_each_once(
    poulpe: Start, cluster: LocalCluster, fresh_target: Target
) -> None:
    flags = ("--redis", cluster.url, "--workers", "16")
    procs = [poulpe(*flags, home=f"p{n}") for n in range(2)]
    ids = [f"cl-{n}" for n in range(2000)]
    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(p.client()) for p in procs]
        chunks = [ids[i : i + 100] for i in range(0, len(ids), 100)]
        for chunk, client in zip(chunks, itertools.cycle(clients), strict=False):
            answer = client.post(
                "/task_in_queue", json=[{"id": i, "method": "GET", "name": fresh_target.url()} for i in chunk]
            )
            assert answer.status_code == 202, answer.text
        eventually(lambda: counts(procs[0])["succeeded"] == 2000, timeout=60)
    seen = fresh_target.count_by_job_id()
    assert sorted(seen) == sorted(ids)
    assert set(seen.values()) == {1}, "no job ran twice"


def test_a_primary_killed_mid_stream_loses_no_acknowledged_job_with_redis_replicas(
    poulpe: Start, cluster: LocalCluster, fresh_target: Target
) -> None:
    proc = poulpe("--redis", cluster.url, "--redis_replicas", "1", "--workers", "16", "--lease", "5")
    owner = cluster.owner("{poulpe}:due")
    stream = Stream(proc, fresh_target)
    with ThreadPoolExecutor(4) as pool:
        for thread in range(4):
            pool.submit(stream.post, thread)
        stream.grows(1000)
        owner.kill()  # kill -9 of the primary serving poulpe's namespace, mid-stream
        eventually(lambda: cluster.owner("{poulpe}:due") is not owner, timeout=30)  # its replica took over
        owner.start()  # back: it rejoins as the new primary's replica, so jobs are acknowledged again
        stream.grows(200)
        stream.stopped.set()
    with proc.client() as client:
        finals = {job_id: result(client, job_id)["status"] for job_id in stream.acked}
    assert set(finals.values()) == {"succeeded"}, "every acknowledged job ran to the end, poulpe never restarted"
    ran = fresh_target.count_by_job_id()
    assert all(ran[job_id] >= 1 for job_id in stream.acked)

"""poulpe on a real Redis Cluster (6 nodes on loopback: 3 primaries, 3 replicas): processes share the work, and a
primary killed with kill -9 mid-stream is followed to its promoted replica without a restart; with
`--redis_replicas 1`, nothing acknowledged is lost."""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.e2e.helpers import accepted, eventually, result, state
from tests.e2e.test_keys import put_key
from tests.e2e.test_redis_failover import Stream
from tests.poulpe_process import Poulpe
from tests.redis_cluster import LocalCluster
from tests.started import Started
from tests.target import Target

Start = Started[Poulpe]


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """One cluster for the module's tests: a test that kills a node starts it again (it rejoins as a replica)."""
    started = LocalCluster(tmp_path_factory.mktemp("cluster")).start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def cluster(shared_cluster: LocalCluster) -> LocalCluster:
    """The module's cluster, ok and empty: each test counts the keys it made."""
    shared_cluster.wait_ok()
    for primary in shared_cluster.primaries():
        primary.client().flushall()
    return shared_cluster


def counts(proc: Poulpe) -> dict[str, int]:
    with proc.client() as client:
        answer: dict[str, int] = client.get("/sys_info").json()["counts"]
    return answer


def test_two_processes_with_six_partitions_spread_two_thousand_jobs_over_every_shard_and_run_each_once(
    poulpe: Start, cluster: LocalCluster, fresh_target: Target
) -> None:
    flags = ("--redis", cluster.url, "--partitions", "6", "--workers", "16")
    procs = poulpe.many(*flags, homes=["p0", "p1"])
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
    jobs_on = {node.port: len(node.client().keys("{poulpe:*}:job:*")) for node in cluster.primaries()}
    assert len(jobs_on) == 3 and all(n > 100 for n in jobs_on.values()), f"jobs on each primary: {jobs_on}"
    assert sum(jobs_on.values()) == 2000


def test_a_primary_killed_mid_stream_loses_no_acknowledged_job_with_redis_replicas(
    poulpe: Start, cluster: LocalCluster, fresh_target: Target
) -> None:
    flags = ("--redis", cluster.url, "--partitions", "6", "--redis_replicas", "1", "--workers", "16", "--lease", "5")
    proc = poulpe(*flags)
    victim = cluster.owner("{poulpe:0}:due")  # a primary serving partition 0 (keys, pause) and others
    stream = Stream(proc, fresh_target)
    with ThreadPoolExecutor(4) as pool:
        for thread in range(4):
            pool.submit(stream.post, thread)
        stream.grows(1000)
        victim.kill()  # kill -9 mid-stream
        eventually(lambda: cluster.owner("{poulpe:0}:due") is not victim, timeout=30)  # its replica took over
        victim.start()  # back: it rejoins as the new primary's replica, so jobs are acknowledged again
        stream.grows(200)
        stream.stopped.set()
    with proc.client(timeout=60) as client, ThreadPoolExecutor(16) as pool:  # the long-polls side by side
        finals = dict(
            zip(stream.acked, pool.map(lambda job_id: result(client, job_id)["status"], stream.acked), strict=True)
        )
    assert set(finals.values()) == {"succeeded"}, "every acknowledged job ran to the end, poulpe never restarted"
    ran = fresh_target.count_by_job_id()
    assert all(ran[job_id] >= 1 for job_id in stream.acked)
    twice = [job_id for job_id, n in ran.items() if n > 1]
    assert len(twice) <= 40, f"only jobs running or held ready at the kill ran twice: {len(twice)}"


def test_with_partitions_a_keys_parallelism_and_the_pause_hold_across_every_partition_and_process(
    poulpe: Start, cluster: LocalCluster, fresh_target: Target
) -> None:
    flags = ("--redis", cluster.url, "--partitions", "6", "--workers", "8")
    a, b = poulpe.many(*flags, homes=["p0", "p1"])
    with a.client() as on_a, b.client() as on_b:
        put_key(on_a, "pair", parallelism=2)
        job = {"method": "GET", "name": fresh_target.url("/slow", ms=200, key="pair"), "key": "pair"}
        ids = [accepted(client, **job)["id"] for client in (on_a, on_b) * 6]
        done = [result(on_a, job_id) for job_id in ids]
        assert on_b.post("/pause").json() == {"paused": True}  # the pause reaches every partition
        free = [accepted(on_a, method="GET", name=fresh_target.url(), id=f"free-{n}")["id"] for n in range(12)]
        time.sleep(1.5)
        assert {state(on_a, job_id)["status"] for job_id in free} == {"queued"}
        on_a.post("/resume")
        assert all(result(on_b, job_id)["status"] == "succeeded" for job_id in free)
    assert all(job["status"] == "succeeded" for job in done)
    assert fresh_target.max_concurrency("pair") == 2, "two at a time, across both processes and all partitions"

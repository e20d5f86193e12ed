"""Three poulpe processes in one Kafka consumer group on one Redis share a 6-partition topic; one is killed midway:
Kafka gives its partitions to the others, Redis gives its jobs to the others once their lease runs out, and every
message still ends as one job that ran and a result on the response topic."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.e2e.helpers import eventually
from tests.kafka_broker import Broker
from tests.kafka_client import Responses, Topics, create_topics, produce
from tests.poulpe_process import Poulpe
from tests.redis_server import RedisServer
from tests.started import Started
from tests.target import Target


def kafka_state(proc: Poulpe) -> dict[str, object]:
    with httpx.Client(base_url=proc.url, timeout=10) as client:
        state: dict[str, object] = client.get("/sys_info").json()["kafka"]
    return state


# Tansu only: a dead member leaves its group after the session timeout (noida-db keeps it as leader, see
# tests/kafka_broker.py), which is what a rebalance after kill -9 needs. The broker is the one the Kafka tests share:
# the test kills a poulpe, never the broker, and its topics and group are its own.
@pytest.mark.parametrize("broker", ["tansu"], indirect=True)
async def test_three_processes_in_one_group_share_the_topic_and_survive_one_killed_midway(
    broker: Broker, poulpe: Started[Poulpe], redis_server: RedisServer, redis_prefix: str, fresh_target: Target
) -> None:
    tansu = broker
    topics = Topics.fresh()
    await create_topics(tansu.servers, topics, partitions=6)
    flags = [*topics.flags(tansu.servers, tansu.session_timeout_ms), "--redis", redis_server.url]
    flags += ["--redis_prefix", redis_prefix, "--workers", "4", "--lease", "2"]
    procs = poulpe.many(*flags, homes=["p0", "p1", "p2"])
    eventually(lambda: all(kafka_state(p)["consumer"] == {"state": "connected"} for p in procs), timeout=30)
    await asyncio.sleep(2 * tansu.session_timeout_ms / 1000)  # the group settles with its three members
    jobs = [{"id": f"g{n}", "method": "GET", "name": fresh_target.url("/slow", ms=30)} for n in range(600)]
    await produce(tansu.servers, topics.jobs, jobs)
    async with Responses(tansu.servers, topics.results) as responses:
        await responses.read_until(lambda r: len(r.results()) >= 150, within=60)
        assert all(int(str(kafka_state(p)["taken"])) > 0 for p in procs), "each process consumed its partitions"
        procs[0].kill()  # kill -9 midway: its partitions go to the others, its leased jobs after --lease
        await responses.read_until(lambda r: len(r.results()) >= len(jobs), within=90)
    results = responses.results()
    assert set(results) == {str(job["id"]) for job in jobs}, "no message skipped"
    assert all(r["status"] == "succeeded" for rs in results.values() for r in rs)
    runs = fresh_target.count_by_job_id()
    assert all(runs[str(job["id"])] >= 1 for job in jobs)
    assert sum(n > 1 for n in runs.values()) <= 5, "only the jobs the killed process held ran twice"

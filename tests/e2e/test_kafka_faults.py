"""Kafka intake when things go wrong: poulpe killed mid-stream, the broker gone for a while, too much to do.

poulpe is served in the test's process unless the test kills or signals it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka.errors import KafkaError

from tests.kafka_broker import KINDS, Broker
from tests.kafka_client import Responses, Topics, create_topics, produce
from tests.poulpe_process import Poulpe
from tests.serving import ServedPoulpe
from tests.target import Target


def slow_jobs(target: Target, prefix: str, count: int, ms: int = 20) -> list[dict[str, object]]:
    return [{"id": f"{prefix}{n}", "method": "GET", "name": target.url("/slow", ms=ms)} for n in range(count)]


async def test_kill_9_mid_stream_then_restart_every_message_ends_as_a_result(
    broker: Broker, topics: Topics, poulpe: Callable[..., Poulpe], fresh_target: Target
) -> None:
    workers = 4
    proc = poulpe(*topics.flags(broker.servers, broker.session_timeout_ms), "--workers", str(workers))
    jobs = slow_jobs(fresh_target, "c", 400)
    producing = asyncio.create_task(_produce_slowly(broker.servers, topics.jobs, jobs, 20, 0.1))
    async with Responses(broker.servers, topics.results) as responses:
        await responses.read_until(lambda r: len(r.results()) >= 60)
        killed_at = time.time()
        proc.kill()  # kill -9 while messages are still being produced and jobs are running
        if broker.kind == "noida":
            # noida-db quirk: after a member is killed with kill -9 it names the dead member as the group's leader
            # for ever; restarting its Kafka service (same process, messages and offsets kept) clears it.
            broker.restart_kafka()
        proc.restart()
        await producing
        await responses.read_until(lambda r: len(r.results()) >= len(jobs), within=90)
    results = responses.results()
    assert set(results) == {str(job["id"]) for job in jobs}  # none skipped
    assert all(r["status"] == "succeeded" for rs in results.values() for r in rs)
    runs = fresh_target.count_by_job_id()
    twice = [job_id for job_id, n in runs.items() if n > 1]
    # only jobs in flight at the kill run again: running, or ended a moment before and their outcome not yet stored
    first_runs = {job_id: min(call.at for call in fresh_target.calls_for(job_id)) for job_id in twice}
    assert all(at > killed_at - 1.0 for at in first_runs.values()), (killed_at, first_runs)
    assert len(twice) <= 3 * workers, twice
    assert all(runs[str(job["id"])] >= 1 for job in jobs)


async def _produce_slowly(servers: str, topic: str, jobs: list[dict[str, object]], chunks: int, every: float) -> None:
    size = len(jobs) // chunks
    for start in range(0, len(jobs), size):
        for tries in range(10):  # noida-db's Kafka service may be restarting (see above): a user's producer retries
            try:
                await produce(servers, topic, jobs[start : start + size])
                break
            except KafkaError:
                if tries == 9:
                    raise
                await asyncio.sleep(0.5)
        await asyncio.sleep(every)


async def test_the_consumer_pauses_above_max_pending_and_resumes(
    broker: Broker, topics: Topics, served: Callable[..., ServedPoulpe], fresh_target: Target
) -> None:
    flags = topics.flags(broker.servers, broker.session_timeout_ms)
    proc = served(*flags, "--workers", "2", "--max_pending", "5")
    jobs = slow_jobs(fresh_target, "p", 30, ms=100)
    await produce(broker.servers, topics.jobs, jobs)
    seen_pending, paused = [], False
    async with Responses(broker.servers, topics.results) as responses, proc.async_client() as client:
        deadline = time.monotonic() + 60
        while len(responses.results()) < len(jobs) and time.monotonic() < deadline:
            kafka = (await client.get("/sys_info")).json()["kafka"]
            seen_pending.append(kafka["pending"])
            paused = paused or kafka["paused"]
            await responses.read_some(100)
        await responses.read_until(lambda r: len(r.results()) >= len(jobs))
    assert paused
    assert max(seen_pending) <= 5
    assert "kafka consumer paused" in proc.log()


async def test_broker_away_for_10_s_poulpe_serves_http_and_resumes_consuming(
    own_noida: Broker, served: Callable[..., ServedPoulpe], fresh_target: Target
) -> None:
    broker = own_noida
    topics = Topics.fresh()
    await create_topics(broker.servers, topics)
    flags = topics.flags(broker.servers, broker.session_timeout_ms)
    proc = served(*flags)
    await produce(broker.servers, topics.jobs, slow_jobs(fresh_target, "before", 5))
    async with Responses(broker.servers, topics.results) as responses:
        await responses.read_until(lambda r: len(r.results()) >= 5)

    broker.stop(graceful=True)
    async with proc.async_client() as client:
        away_until = time.monotonic() + 10
        while time.monotonic() < away_until:
            health = await client.get("/health")
            assert health.status_code == 200
            answer = await client.post(
                "/task_in_queue", json={"method": "GET", "name": fresh_target.url("/echo"), "wait": 5}
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["status"] == "succeeded"
            await asyncio.sleep(1)
        kafka = (await client.get("/sys_info")).json()["kafka"]
        assert kafka["consumer"]["state"] == "down"
    broker.start()

    await produce(broker.servers, topics.jobs, slow_jobs(fresh_target, "after", 5))
    async with Responses(broker.servers, topics.results) as responses:
        await responses.read_until(lambda r: {f"after{n}" for n in range(5)} <= r.results().keys(), within=60)
    log = proc.log()
    assert log.count("kafka consumer down") <= 2, "a state change is logged once, not once per try"
    assert "kafka consumer connected" in log


async def test_sigterm_stops_consuming_first_and_running_jobs_still_answer_on_the_topic(
    broker: Broker, topics: Topics, poulpe: Callable[..., Poulpe], fresh_target: Target
) -> None:
    flags = topics.flags(broker.servers, broker.session_timeout_ms)
    proc = poulpe(*flags, "--workers", "2", "--grace", "10")
    await produce(broker.servers, topics.jobs, slow_jobs(fresh_target, "t", 2, ms=1500))
    deadline = time.monotonic() + 30
    while len(fresh_target.calls) < 2:
        assert time.monotonic() < deadline, "the two slow jobs did not start"
        await asyncio.sleep(0.05)

    assert await asyncio.to_thread(proc.terminate) == 0
    async with Responses(broker.servers, topics.results) as responses:
        await responses.read_until(lambda r: {"t0", "t1"} <= r.results().keys(), within=30)
    assert all(responses.results()[job_id][0]["status"] == "succeeded" for job_id in ("t0", "t1"))
    log = proc.log()
    assert log.index("kafka consumer stopped") < log.index("job t0 succeeded")


@pytest.mark.parametrize("kind", KINDS)
async def test_poulpe_starts_without_a_broker_and_consumes_once_one_answers(
    kind: str, served: Callable[..., ServedPoulpe], fresh_target: Target, tmp_path: Path
) -> None:
    broker = Broker(kind, tmp_path / f"late-{kind}")  # not started yet
    topics = Topics.fresh()
    proc = served(*topics.flags(broker.servers, broker.session_timeout_ms))
    async with proc.async_client() as client:
        assert (await client.get("/health")).status_code == 200
        answer = await client.post("/task_in_queue", json={"method": "GET", "name": fresh_target.url(), "wait": 5})
        assert answer.json()["status"] == "succeeded"
        deadline = time.monotonic() + 10
        while (await client.get("/sys_info")).json()["kafka"]["consumer"]["state"] != "down":
            assert time.monotonic() < deadline, "the consumer never said the broker is down"
            await asyncio.sleep(0.1)
    try:
        broker.start()
        await create_topics(broker.servers, topics)
        await produce(broker.servers, topics.jobs, slow_jobs(fresh_target, "late", 3))
        async with Responses(broker.servers, topics.results) as responses:
            await responses.read_until(lambda r: len(r.results()) >= 3, within=60)
    finally:
        broker.stop()
    assert proc.log().count("kafka consumer down") == 1


async def test_delayed_jobs_fill_max_pending_until_they_run_then_the_consumer_goes_on(
    broker: Broker, served: Callable[..., ServedPoulpe], fresh_target: Target
) -> None:
    topics = Topics.fresh()
    await create_topics(broker.servers, topics, partitions=1)  # one partition: messages are read in produce order
    proc = served(*topics.flags(broker.servers, broker.session_timeout_ms), "--max_pending", "2")
    later = [{**job, "delay": 3} for job in slow_jobs(fresh_target, "later", 2)]
    await produce(broker.servers, topics.jobs, later)
    await produce(broker.servers, topics.jobs, slow_jobs(fresh_target, "next", 1))
    async with Responses(broker.servers, topics.results) as responses:
        await responses.read_until(lambda r: "next0" in r.results(), within=30)
    results = responses.results()
    assert results["next0"][0]["created_at"] >= max(results[f"later{n}"][0]["finished_at"] for n in range(2)) - 0.5
    assert "kafka consumer paused" in proc.log() and "kafka consumer resumed" in proc.log()

"""Kafka intake: a user produces jobs to a topic and reads each result, keyed by job id, from the response topic.

Every test runs against two real Kafka-protocol brokers (noida-db and Tansu), so poulpe relies only on what the
protocol promises. Where no process boundary is needed, poulpe is served in the test's process (every Kafka client it
opens is closed when it stops: test_kafka_close.py).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

from aiokafka import AIOKafkaProducer

from tests.kafka_broker import Broker
from tests.kafka_client import Responses, Topics, produce
from tests.otlp_collector import Collector
from tests.poulpe_process import Poulpe
from tests.serving import ServedPoulpe
from tests.target import Target


def kafka_flags(broker: Broker, topics: Topics) -> list[str]:
    return topics.flags(broker.servers, broker.session_timeout_ms)


async def test_500_jobs_from_the_topic_each_run_once_and_answer_on_the_response_topic(
    broker: Broker, topics: Topics, poulpe: Callable[..., Poulpe], fresh_target: Target, exec_dir: Path
) -> None:
    # a subprocess: served in the test's process, poulpe's 500 jobs and the test's reading share one interpreter
    poulpe(*kafka_flags(broker, topics), "--exec_dir", str(exec_dir), "--workers", "16")
    http_jobs = [
        {"id": f"h{n}", "method": "POST", "name": fresh_target.url("/sum"), "params": {"a": n, "b": 1}}
        for n in range(250)
    ]
    exec_jobs = [{"id": f"x{n}", "method": "EXEC", "name": "add", "params": f"{n} 2"} for n in range(250)]
    await produce(broker.servers, topics.jobs, [job for pair in zip(http_jobs, exec_jobs, strict=True) for job in pair])

    async with Responses(broker.servers, topics.results) as responses:
        await responses.read_until(lambda r: len(r.results()) >= 500, within=90)
    results = responses.results()
    assert set(results) == {f"h{n}" for n in range(250)} | {f"x{n}" for n in range(250)}
    for n in range(250):
        assert results[f"h{n}"][0]["status"] == "succeeded"
        assert results[f"h{n}"][0]["result"]["body"] == str(n + 1)
        assert results[f"x{n}"][0]["result"]["stdout"] == str(n + 2)
    assert all(len(v) == 1 for v in results.values())
    counts = fresh_target.count_by_job_id()
    assert {job_id: counts[job_id] for job_id in counts if job_id.startswith("h")} == {f"h{n}": 1 for n in range(250)}


async def test_malformed_messages_each_answer_an_error_and_the_consumer_goes_on(
    broker: Broker, topics: Topics, served: Callable[..., ServedPoulpe], fresh_target: Target
) -> None:
    proc = served(*kafka_flags(broker, topics))
    bad: list[bytes | None] = []
    for n in range(50):
        kind = n % 5
        if kind == 0:
            bad.append(b"not json {" + str(n).encode())
        elif kind == 1:
            bad.append(b'{"method": "GET"}')  # no name
        elif kind == 2:
            bad.append(b'{"method": "FLY", "name": "x"}')
        elif kind == 3:
            bad.append(b'[{"method": "GET", "name": "http://127.0.0.1/"}]')  # an array: one job per message
        else:
            bad.append(b'{"method": "GET", "name": "http://127.0.0.1/", "colour": "red"}')
    good = {"id": "after-the-bad-ones", "method": "GET", "name": fresh_target.url("/echo")}
    await produce(broker.servers, topics.jobs, [*bad, good])

    async with Responses(broker.servers, topics.results) as responses:
        await responses.read_until(lambda r: "after-the-bad-ones" in r.results() and len(r.errors()) >= 50)
    errors = responses.errors()
    assert len(errors) == 50
    assert {e["topic"] for e in errors} == {topics.jobs}
    assert len({(e["partition"], e["offset"]) for e in errors}) == 50
    fields = {e["field"] for e in errors}
    assert {"name", "method", "colour"} <= fields
    assert responses.results()["after-the-bad-ones"][0]["status"] == "succeeded"
    async with proc.async_client() as client:
        info = (await client.get("/sys_info")).json()
    assert info["kafka"]["malformed"] == 50
    assert info["kafka"]["consumer"]["state"] == "connected"


async def test_a_message_without_id_gets_the_same_id_on_every_delivery(
    broker: Broker, topics: Topics, served: Callable[..., ServedPoulpe], fresh_target: Target
) -> None:
    served(*kafka_flags(broker, topics))
    await produce(broker.servers, topics.jobs, [{"method": "GET", "name": fresh_target.url("/echo")}])
    async with Responses(broker.servers, topics.results) as responses:
        await responses.read_until(lambda r: len(r.results()) == 1)
    (job_id,) = responses.results()
    assert job_id.startswith(f"kafka:{topics.jobs}:")
    assert fresh_target.count_by_job_id()[job_id] == 1


async def test_kafka_state_shows_in_health_and_sys_info(
    broker: Broker, topics: Topics, served: Callable[..., ServedPoulpe]
) -> None:
    proc = served(*kafka_flags(broker, topics))
    async with proc.async_client() as client:
        health = (await client.get("/health")).json()
        for _ in range(100):  # the consumer connects in the background: poulpe never waits for a broker to start
            info = (await client.get("/sys_info")).json()["kafka"]
            if info["consumer"]["state"] == "connected":
                break
            await asyncio.sleep(0.1)
    assert health["ok"] is True
    assert health["detail"]["kafka"]["topic"] == topics.jobs
    assert info["group"] == topics.group
    assert info["consumer"] == {"state": "connected"}


async def test_a_job_sent_twice_runs_once_and_answers_each_time(
    broker: Broker, topics: Topics, served: Callable[..., ServedPoulpe], fresh_target: Target
) -> None:
    served(*kafka_flags(broker, topics))
    job = {"id": "twice", "method": "GET", "name": fresh_target.url("/echo")}
    async with Responses(broker.servers, topics.results) as responses:
        await produce(broker.servers, topics.jobs, [job])
        await responses.read_until(lambda r: len(r.results().get("twice", [])) == 1)
        await produce(broker.servers, topics.jobs, [job])
        await responses.read_until(lambda r: len(r.results().get("twice", [])) == 2)
    first, second = responses.results()["twice"]
    assert first["finished_at"] == second["finished_at"]  # the same run, answered again
    assert fresh_target.count_by_job_id()["twice"] == 1


async def test_the_sasl_password_shows_nowhere(broker: Broker, topics: Topics, poulpe: Callable[..., Poulpe]) -> None:
    # a subprocess: its log is everything the process writes, aiokafka's own output included
    password = "kafka-Secret-91c3"
    proc = poulpe(
        *kafka_flags(broker, topics),
        *("--kafka_security_protocol", "SASL_PLAINTEXT", "--kafka_sasl_mechanism", "PLAIN"),
        *("--kafka_sasl_username", "poulpe"),
        env={"POULPE_KAFKA_SASL_PASSWORD": password},
    )
    await produce(broker.servers, topics.jobs, [b"{}"])  # something to read, so the consumer tries to log in
    async with proc.async_client() as client:
        await asyncio.sleep(2)
        shown = [(await client.get(path)).text for path in ("/sys_info", "/health")]
    proc.stop()
    assert all(password not in text for text in shown)
    assert password not in proc.log()


async def test_a_records_traceparent_header_is_continued_by_its_jobs_call(
    broker: Broker, topics: Topics, poulpe: Callable[..., Poulpe], target: Target
) -> None:
    trace_id, parent = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    with Collector() as collector:  # a subprocess: OpenTelemetry's tracer provider is set once per process
        poulpe(*kafka_flags(broker, topics), "--otlp_endpoint", collector.url, env={"OTEL_BSP_SCHEDULE_DELAY": "100"})
        producer = AIOKafkaProducer(bootstrap_servers=broker.servers, acks="all")
        await producer.start()
        try:
            job = {"id": f"traced-{topics.group}", "method": "GET", "name": target.url("/echo")}
            headers = [("traceparent", f"00-{trace_id}-{parent}-01".encode())]
            await producer.send_and_wait(topics.jobs, json.dumps(job).encode(), headers=headers)
        finally:
            await producer.stop()
        async with Responses(broker.servers, topics.results) as responses:
            await responses.read_until(lambda r: job["id"] in r.results(), within=60)
        [span] = await asyncio.to_thread(collector.wait_for, job["id"])
    [call] = target.calls_for(job["id"])
    assert call.headers["traceparent"] == f"00-{trace_id}-{span.span_id}-01"
    assert (span.trace_id, span.parent_span_id) == (trace_id, parent)

"""8. Kafka intake: jobs/s from produce to stored, and to result on the response topic (noida-db broker)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench import api
from bench.clients import start_target
from bench.context import Context
from bench.procs import cpu_seconds
from bench.results import Result
from tests.kafka_broker import Broker

NAME, TITLE = "kafka", "Kafka intake: produce to stored, produce to result"
PARTITIONS = 4


async def _read_results(servers: str, topic: str, n: int, within: float) -> float:
    """Read the response topic until `n` results came; the time.monotonic() the last one was read."""
    consumer = AIOKafkaConsumer(bootstrap_servers=servers, auto_offset_reset="earliest", fetch_max_bytes=16 << 20)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0)])
        await consumer.seek_to_beginning()
        seen, deadline = 0, time.monotonic() + within
        while seen < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {seen} of {n} results on the response topic within {within:.0f} s")
            batch = await consumer.getmany(timeout_ms=200, max_records=10_000)
            seen += sum(1 for msgs in batch.values() for m in msgs if m.key is not None)
        return time.monotonic()
    finally:
        await consumer.stop()


async def _wait_taken(client: api.PoulpeClient, n: int, within: float) -> float:
    """Poll /sys_info every 0.05 s until poulpe has stored `n` Kafka jobs (their offsets commit right after)."""
    deadline = time.monotonic() + within
    while True:
        taken = int((await client.get("/sys_info"))["kafka"]["taken"])
        if taken >= n:
            return time.monotonic()
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {taken} of {n} Kafka jobs stored within {within:.0f} s")
        await asyncio.sleep(0.05)


async def measure(ctx: Context) -> Result:
    n = ctx.pick(20_000, 3_000)
    workers = 64
    result = Result(
        NAME,
        TITLE,
        f"A noida-db broker (persistent, on loopback) and a fresh poulpe (--workers {workers}) consuming a"
        f" {PARTITIONS}-partition topic. After one warm-up job has gone round (so the group is joined), {n:,} GET"
        " jobs (no id: each gets the id of its message) to bench/target.py are produced in one burst (acks=all)."
        " The clock runs from the first send until /sys_info (polled every 0.05 s) counts them all stored"
        " (`kafka.taken`; the batch's offsets are committed right after; --max_pending is set above the count, so the"
        " consumer never pauses), and until a reader in the bench process"
        " has seen every result on the response topic. Producer, reader and poulpe share the machine's 2 cores.",
    )
    target = await start_target(ctx)
    broker = Broker("noida", ctx.workdir / "noida").start()
    try:
        tag = uuid.uuid4().hex[:8]
        jobs_topic, results_topic = f"jobs-{tag}", f"results-{tag}"
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.servers)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(jobs_topic, PARTITIONS, 1), NewTopic(results_topic, 1, 1)])
        finally:
            await admin.close()
        poulpe = ctx.procs.poulpe(
            "poulpe-kafka",
            *("--kafka_servers", broker.servers, "--kafka_topic", jobs_topic, "--kafka_resp_topic", results_topic),
            # --max_pending above n: what is measured is intake, not the back-pressure (docs/kafka.md)
            *("--kafka_session_timeout", "6", "--max_retry", "0", "--max_pending", str(2 * n)),
            workers=workers,
        ).start()
        await asyncio.to_thread(poulpe.wait_http, "/health")
        job = json.dumps({"method": "GET", "name": f"{target.url}/job"}).encode()
        producer = AIOKafkaProducer(bootstrap_servers=broker.servers, acks="all", linger_ms=5)
        await producer.start()
        async with api.session() as session:
            client = api.PoulpeClient(poulpe.url, session)
            await (await producer.send(jobs_topic, job))
            await _read_results(broker.servers, results_topic, 1, within=60)
            ctx.log(f"warm-up done; producing {n:,} jobs")
            reading = asyncio.create_task(
                _read_results(broker.servers, results_topic, n + 1, within=ctx.pick(600, 120))
            )
            start, cpu = time.monotonic(), cpu_seconds(poulpe.pid)
            futures = [await producer.send(jobs_topic, job) for _ in range(n)]
            await asyncio.gather(*futures)
            produced = time.monotonic()
            stored = await _wait_taken(client, n + 1, within=ctx.pick(600, 120))
            answered = await reading
            cpu = cpu_seconds(poulpe.pid) - cpu
            failed = int((await client.get("/sys_info"))["today"]["failed"])
        await producer.stop()
        poulpe.stop()
    finally:
        broker.stop()
    result.add("Kafka jobs, produce → stored", n / (stored - start), "jobs/s")
    result.add("Kafka jobs, produce → result on the response topic", n / (answered - start), "jobs/s")
    result.notes.append(f"The bench's producer alone sent the {n:,} messages at {n / (produced - start):,.0f} msg/s.")
    result.notes.append(f"poulpe used {cpu / n * 1e6:,.0f} µs of CPU per job (all threads, user + system).")
    if failed:
        result.notes.append(f"{failed} jobs failed.")
    result.raw.update(stored_s=stored - start, answered_s=answered - start, produced_s=produced - start)
    return result

"""Every Kafka client poulpe opens is closed when it stops: a poulpe stopped in a process that goes on (an embedding
application, the tests' in-process server) leaves no producer, consumer or broker connection behind.

poulpe runs in the test's own process, so the clients it made can be looked at after its stop.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from poulpe.cli import settings_from
from poulpe.intake import kafka, kafka_results
from poulpe.intake.kafka_outbox import Outbox
from poulpe.intake.kafka_results import Results
from poulpe.job import Job, Method, Status
from poulpe.service import Service
from tests.kafka_broker import Broker
from tests.kafka_client import Responses, Topics, create_topics, produce
from tests.target import Target

Client = AIOKafkaProducer | AIOKafkaConsumer


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Client]]:
    """Every producer and consumer poulpe makes, kept so the test can see each was closed."""
    clients: list[Client] = []

    class Producer(AIOKafkaProducer):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            clients.append(self)

    class Consumer(AIOKafkaConsumer):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            clients.append(self)

    monkeypatch.setattr(kafka_results, "AIOKafkaProducer", Producer)
    monkeypatch.setattr(kafka, "AIOKafkaConsumer", Consumer)
    yield clients
    clients.clear()
    gc.collect()  # an unclosed client warns here (and the warning fails the test)


def left_open(clients: list[Client]) -> list[str]:
    """The clients not stopped, or whose connections to the brokers are still open."""

    def connections(client: Client) -> Any:
        inner = client.client if isinstance(client, AIOKafkaProducer) else client._client
        return inner._conns.values()

    def tasks(client: Client) -> list[Any]:  # its metadata refresh, and a producer's sender
        inner = client.client if isinstance(client, AIOKafkaProducer) else client._client
        sender = client._sender.sender_task if isinstance(client, AIOKafkaProducer) else None
        return [task for task in (inner._sync_task, sender) if task is not None and not task.done()]

    return [
        repr(c)
        for c in clients
        if c._closed is not True or any(conn.connected() for conn in connections(c)) or tasks(c)
    ]


def final_job(job_id: str) -> Job:
    return Job(id=job_id, method=Method.GET, name="http://127.0.0.1/", status=Status.SUCCEEDED, source="kafka")


async def test_a_result_and_an_error_sent_at_once_share_one_producer_which_stop_closes(
    broker: Broker, topics: Topics, tmp_path: Path, made: list[Client]
) -> None:
    outbox = Outbox(tmp_path / "outbox.db")
    await outbox.open()
    results = Results(topics.results, outbox, {"bootstrap_servers": broker.servers}, on_delivered=lambda: None)
    results.start()
    results.push(final_job("r1"))  # the sender opens the producer...
    error = {"type": "error", "error": "bad", "field": None, "topic": topics.jobs, "partition": 0, "offset": 0}
    await results.send_errors([error])  # ...while a malformed message's error needs it too
    async with Responses(broker.servers, topics.results) as responses:
        await responses.read_until(lambda r: "r1" in r.results() and len(r.errors()) == 1)
    await results.stop(flush_s=5)
    await outbox.close()
    assert len(made) == 1, f"one producer for the response topic, not {len(made)}"
    assert left_open(made) == []


async def test_a_stop_while_a_result_waits_for_an_absent_broker_closes_the_producer_and_keeps_the_result(
    own_noida: Broker, tmp_path: Path, made: list[Client]
) -> None:
    topics = Topics.fresh()
    await create_topics(own_noida.servers, topics)
    outbox = Outbox(tmp_path / "outbox.db")
    await outbox.open()
    await outbox.add(["r1", "r2"])
    delivered = asyncio.Event()
    results = Results(topics.results, outbox, {"bootstrap_servers": own_noida.servers}, on_delivered=delivered.set)
    results.start()
    results.push(final_job("r1"))
    async with asyncio.timeout(30):
        await delivered.wait()
    own_noida.stop(graceful=True)
    results.push(final_job("r2"))  # its send waits for a broker that does not come back before the stop
    await asyncio.sleep(0.5)
    began = time.monotonic()
    await results.stop(flush_s=1)
    stopped_in = time.monotonic() - began
    assert outbox.ids == {"r2"}, "an unsent result stays in the outbox for the next start"
    await outbox.close()
    assert left_open(made) == [], "the producer's sender and metadata tasks would retry for ever"
    assert stopped_in < 1 + 3, "the stop does not wait for the absent broker beyond its flush"


async def test_stopping_poulpe_closes_every_kafka_client_it_made(
    broker: Broker, topics: Topics, tmp_path: Path, fresh_target: Target, made: list[Client]
) -> None:
    args = ["--data", str(tmp_path / "poulpe.db"), "--dead", str(tmp_path / "dead")]
    settings = settings_from([*args, *topics.flags(broker.servers, broker.session_timeout_ms)])
    good = {"id": "good", "method": "GET", "name": fresh_target.url()}
    service = Service(settings)
    await service.start()
    try:
        await produce(broker.servers, topics.jobs, [good])
        async with Responses(broker.servers, topics.results) as responses:
            await responses.read_until(lambda r: "good" in r.results())
    finally:
        await service.stop()

    # poulpe starts again and its first batch holds the finished job again (its result goes again) and malformed
    # messages (their errors go): both need the response topic's producer at once
    await produce(broker.servers, topics.jobs, [b"not json", good, b'{"method": "GET"}'])
    service = Service(settings)
    await service.start()
    try:
        async with Responses(broker.servers, topics.results) as responses:
            await responses.read_until(lambda r: len(r.results().get("good", [])) == 2 and len(r.errors()) == 2)
    finally:
        await service.stop()
    await asyncio.sleep(0)
    assert len(made) == 4, "a consumer and a producer each time"
    assert left_open(made) == []


async def test_a_client_being_closed_when_its_task_is_cancelled_is_closed_all_the_same() -> None:
    closed = asyncio.Event()

    async def slow_close() -> None:  # a consumer leaving its group, a producer flushing
        await asyncio.sleep(0.2)
        closed.set()

    closing = asyncio.create_task(kafka_results.close_quietly(slow_close))
    await asyncio.sleep(0.05)
    closing.cancel()  # the consumer's task is cancelled by a stop while it closes its consumer
    with pytest.raises(asyncio.CancelledError):
        await closing
    assert closed.is_set()


async def test_stopping_poulpe_while_the_broker_is_away_closes_every_kafka_client_it_made(
    own_noida: Broker, tmp_path: Path, fresh_target: Target, made: list[Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kafka, "PROBE_S", 1.0)  # the consumer finds the broker gone in a second or two, not 5 to 15
    topics = Topics.fresh()
    await create_topics(own_noida.servers, topics)
    args = ["--data", str(tmp_path / "poulpe.db"), "--dead", str(tmp_path / "dead")]
    service = Service(settings_from([*args, *topics.flags(own_noida.servers, own_noida.session_timeout_ms)]))
    await service.start()
    try:
        await produce(own_noida.servers, topics.jobs, [{"id": "one", "method": "GET", "name": fresh_target.url()}])
        async with Responses(own_noida.servers, topics.results) as responses:
            await responses.read_until(lambda r: "one" in r.results())
        own_noida.stop(graceful=True)
        report = service.state()["reports"]["kafka"]
        for _ in range(300):  # the consumer finds the broker gone within its probe (poulpe/intake/kafka.py)
            if report()["consumer"]["state"] == "down":
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the consumer never said the broker is away")
    finally:
        began = time.monotonic()
        await service.stop()
    assert left_open(made) == []
    assert time.monotonic() - began < 5 + 10 + 3, "the stop's flush and the consumer's 10 s, no more"

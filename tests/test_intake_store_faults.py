"""What a client is told when Redis goes away in the middle of storing its job: HTTP, WebSocket and Kafka intake.

A plain 503 means nothing was stored. When the store's reply was lost and Redis stays away, the answer is a 503
with `"stored": "unknown"` and the ids, and a retry with those ids is safe (SPEC 2.3).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import websockets
from aiokafka import ConsumerRecord, TopicPartition

from poulpe.app import create_app, limits_for
from poulpe.errors import OutcomeUnknown
from poulpe.intake.kafka import KafkaIntake
from poulpe.job import Job
from poulpe.settings import Settings
from poulpe.store.redis_scripts import ADD
from tests.poulpe_process import free_port
from tests.redis_proxy import RedisProxy
from tests.redis_server import RedisServer

ADD_SHA = hashlib.sha1(ADD.encode()).hexdigest().encode()


def later(n: int) -> dict[str, Any]:
    """A job that will not run during the test."""
    return {"method": "GET", "name": f"http://127.0.0.1:9/later/{n}", "delay": 3600}


@pytest.fixture
def proxy(redis_server: RedisServer) -> Iterator[RedisProxy]:
    proxy = RedisProxy(redis_server.port).start()
    yield proxy
    proxy.stop()


@pytest.fixture
async def server(
    proxy: RedisProxy, redis_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[str]:
    """poulpe in this process (uvicorn), its Redis behind the proxy; yields its base URL."""
    monkeypatch.setattr("poulpe.store.redis.PATIENCE_S", 0.5)  # Redis "stays away" longer than this
    settings = Settings(redis=proxy.url, redis_prefix=redis_prefix, data=tmp_path / "p.db", dead=tmp_path / "dead")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    for _ in range(1000):  # up to 10 s
        if server.started:
            break
        await asyncio.sleep(0.01)
    assert server.started, "poulpe did not start"
    yield f"127.0.0.1:{port}"
    proxy.accept()
    server.should_exit = True
    await serving


async def test_a_lost_reply_answers_503_stored_unknown_with_the_generated_id_and_a_retry_with_it_is_safe(
    server: str, proxy: RedisProxy
) -> None:
    async with httpx.AsyncClient(base_url=f"http://{server}", timeout=10) as client:
        proxy.lose_reply(to=ADD_SHA, then_refuse=True)
        answer = await client.post("/task_in_queue", json=later(1))
        assert answer.status_code == 503
        body = answer.json()
        assert body["stored"] == "unknown" and body["id"]
        proxy.accept()
        retry = await client.post("/task_in_queue", json={**later(1), "id": body["id"]})
    assert retry.status_code == 200 and retry.json()["duplicate"] is True  # it had been stored: one job, not two


async def test_a_batch_gets_the_ids_of_its_slots_in_order(server: str, proxy: RedisProxy) -> None:
    async with httpx.AsyncClient(base_url=f"http://{server}", timeout=10) as client:
        proxy.lose_reply(to=ADD_SHA, then_refuse=True)
        answer = await client.post("/task_in_queue", json=[later(1), {"method": "NOPE"}, later(2)])
        assert answer.status_code == 503
        body = answer.json()
        assert body["stored"] == "unknown"
        first, bad, second = body["ids"]
        assert first and second and bad is None
        proxy.accept()
        retry = await client.post("/task_in_queue", json=[{**later(1), "id": first}, {**later(2), "id": second}])
    assert [slot["duplicate"] for slot in retry.json()] == [True, True]


async def test_a_store_that_refuses_connections_answers_a_plain_503(server: str, proxy: RedisProxy) -> None:
    async with httpx.AsyncClient(base_url=f"http://{server}", timeout=10) as client:
        proxy.refuse()
        answer = await client.post("/task_in_queue", json=later(1))
    assert answer.status_code == 503
    assert "stored" not in answer.json() and "id" not in answer.json()  # nothing was stored: retry as you like


async def test_a_websocket_client_gets_one_error_per_job_with_its_id(server: str, proxy: RedisProxy) -> None:
    async with websockets.connect(f"ws://{server}/ws_task") as socket, asyncio.timeout(20):
        proxy.lose_reply(to=ADD_SHA, then_refuse=True)
        await socket.send(json.dumps([later(1), later(2)]))
        errors = [json.loads(await socket.recv()) for _ in range(2)]
        assert [e["type"] for e in errors] == ["error", "error"]
        assert all(e["stored"] == "unknown" and e["id"] for e in errors)
        proxy.accept()
        await socket.send(json.dumps([{**later(n), "id": e["id"]} for n, e in enumerate(errors, 1)]))
        acks = [json.loads(await socket.recv()) for _ in range(2)]
    assert [(a["type"], a["id"], a.get("duplicate")) for a in acks] == [("ack", e["id"], True) for e in errors]


class _Consumer:
    def __init__(self) -> None:
        self.seeks: list[tuple[TopicPartition, int]] = []

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))


class _Manager:
    """Stands for a manager whose store lost the reply to the batch."""

    def __init__(self) -> None:
        self.draining = asyncio.Event()
        self.submitted: list[Job] = []

    async def submit(self, jobs: list[Job]) -> list[tuple[Job, bool]]:
        self.submitted.extend(jobs)
        raise OutcomeUnknown("lost", [job.id for job in jobs])


async def test_a_kafka_batch_whose_outcome_is_unknown_is_not_committed_and_is_read_again(tmp_path: Path) -> None:
    settings = Settings(
        kafka_servers="127.0.0.1:9", kafka_topic="jobs", kafka_resp_topic="results", data=tmp_path / "p.db"
    )
    manager = _Manager()
    intake = KafkaIntake(settings, manager, limits_for(settings))  # type: ignore[arg-type]
    await intake.outbox.open()
    try:
        tp = TopicPartition("jobs", 0)
        value = b'{"method": "GET", "name": "http://127.0.0.1:9/x"}'
        record = ConsumerRecord("jobs", 0, 7, 0, 0, None, value, None, 0, len(value), ())
        consumer = _Consumer()
        assert await intake._take(consumer, {tp: [record]}) is False  # not committed
        assert consumer.seeks == [(tp, 7)]  # read again: the same message, the same id, so a duplicate at worst
        assert [job.id for job in manager.submitted] == ["kafka:jobs:0:7"]
    finally:
        await intake.outbox.close()

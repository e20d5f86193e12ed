"""What a Kafka user of poulpe does: create topics, produce jobs, read results from the response topic (aiokafka)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic


@dataclass
class Topics:
    jobs: str
    results: str
    group: str

    @classmethod
    def fresh(cls) -> Topics:
        tag = uuid.uuid4().hex[:8]
        return cls(jobs=f"jobs-{tag}", results=f"results-{tag}", group=f"poulpe-{tag}")

    def flags(self, servers: str, session_timeout_ms: int) -> list[str]:
        return ["--kafka_servers", servers, "--kafka_topic", self.jobs, "--kafka_resp_topic", self.results,
                "--kafka_group", self.group, "--kafka_session_timeout", str(session_timeout_ms / 1000)]  # fmt: skip


async def create_topics(servers: str, topics: Topics, partitions: int = 2) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topics.jobs, partitions, 1), NewTopic(topics.results, 1, 1)])
    finally:
        await admin.close()


async def produce(servers: str, topic: str, values: Iterable[dict[str, Any] | bytes | None]) -> None:
    """Send each value (a job object as JSON, or raw bytes) and wait until the broker has them all."""
    producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all")
    try:
        await producer.start()  # a failed start is stopped too: an unclosed producer warns, failing a later test
        futures = [
            await producer.send(topic, v if v is None or isinstance(v, bytes) else json.dumps(v).encode())
            for v in values
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


@dataclass
class Responses:
    """Everything on the response topic so far, read from its beginning by a consumer outside any group."""

    servers: str
    topic: str
    records: list[tuple[str | None, dict[str, Any]]] = field(default_factory=list)
    _consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> Responses:
        self._consumer = AIOKafkaConsumer(bootstrap_servers=self.servers, auto_offset_reset="earliest")
        await self._consumer.start()
        self._consumer.assign([TopicPartition(self.topic, 0)])
        await self._consumer.seek_to_beginning()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._consumer is not None
        await self._consumer.stop()

    async def read_some(self, wait_ms: int = 200) -> None:
        """Read what arrives within `wait_ms` milliseconds."""
        assert self._consumer is not None
        batch = await self._consumer.getmany(timeout_ms=wait_ms)
        for msgs in batch.values():
            for msg in msgs:
                key = msg.key.decode() if msg.key is not None else None
                self.records.append((key, json.loads(msg.value)))

    async def read_until(self, done: Callable[[Responses], bool], within: float = 60) -> Responses:
        """Read on until `done(self)` holds; fails the test when it does not within `within` seconds."""
        assert self._consumer is not None
        deadline = time.monotonic() + within
        while not done(self):
            if time.monotonic() > deadline:
                raise AssertionError(f"response topic: condition not met within {within}s ({len(self.records)} read)")
            await self.read_some(500)
        return self

    def results(self) -> dict[str, list[dict[str, Any]]]:
        """Result records by key (the job id); a job whose result was sent twice has two."""
        out: dict[str, list[dict[str, Any]]] = {}
        for key, value in self.records:
            if value.get("type") == "result" and key is not None:
                out.setdefault(key, []).append(value)
        return out

    def errors(self) -> list[dict[str, Any]]:
        return [value for _, value in self.records if value.get("type") == "error"]

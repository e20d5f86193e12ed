"""Kafka intake: jobs from --kafka_topic, results and errors to --kafka_resp_topic (SPEC 2.5, docs/kafka.md).

At-least-once: a batch's job ids go to the outbox, then its jobs are stored, then its offsets are committed. A message
read twice is a duplicate job (its id, or `kafka:<topic>:<partition>:<offset>` when it gives none), never a second
run. A broker that goes away is reconnected to with backoff while HTTP intake goes on; SIGTERM stops consuming first.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from poulpe.dispatch.events import JobFinal
from poulpe.errors import BadRequest, Unavailable
from poulpe.intake.kafka_outbox import Outbox
from poulpe.intake.kafka_results import LinkState, Results, close_quietly, error_record
from poulpe.job import Job
from poulpe.kafka_flags import connection
from poulpe.manager import JobManager
from poulpe.settings import Settings
from poulpe.store.base import Store
from poulpe.tracing import adopt, from_record_headers
from poulpe.validate import Limits, parse_job

log = logging.getLogger("poulpe.kafka")
SOURCE = "kafka"
BATCH = 500
PROBE_S = 5.0  # an idle consumer checks the brokers still answer this often (aiokafka says nothing when they go)
MAX_BACKOFF_S = 30.0


class _Id(msgspec.Struct):
    id: Any = None


def message_id(topic: str, partition: int, offset: int) -> str:
    """The id of a job whose message gives none: the same for every delivery of that message."""
    job_id = f"kafka:{topic}:{partition}:{offset}"
    return job_id if len(job_id) <= 128 else f"kafka:{hashlib.sha256(job_id.encode()).hexdigest()}"


def outbox_path(settings: Settings) -> Path:
    return settings.data.with_name(f"{settings.data.stem}.kafka.db")


def _outbox(path: Path, shared: Store | None) -> Outbox:
    """The outbox file; on a shared store, mirrored into the store so other processes can settle it."""
    if shared is None:
        return Outbox(path)
    from poulpe.intake.kafka_handover import SharedOutbox
    from poulpe.store.redis import RedisStore

    store = getattr(shared, "coordinator", shared)  # with --partitions, partition 0
    assert isinstance(store, RedisStore)
    return SharedOutbox(path, store)


async def close_consumer(consumer: AIOKafkaConsumer) -> None:
    """Stop a consumer; with the brokers away its stop may be cut short (its coordinator still retrying) or fail, so
    what it closes last, its fetcher and its client (metadata refresh, connections), is closed here all the same."""
    await close_quietly(consumer.stop)
    coordinator = consumer._coordinator
    for task in (getattr(coordinator, "_coordination_task", None), getattr(coordinator, "_heartbeat_task", None)):
        if task is not None and not task.done():
            task.cancel()
    if consumer._fetcher is not None:
        await close_quietly(consumer._fetcher.close)
    await close_quietly(consumer._client.close)


class KafkaIntake:
    def __init__(self, settings: Settings, manager: JobManager, limits: Limits, *, shared: Store | None = None) -> None:
        """`shared`: the store, when other processes share it (the outbox is then shared too)."""
        assert settings.kafka_topic and settings.kafka_resp_topic
        self.settings = settings
        self.manager = manager
        self.limits = limits
        self.topic = settings.kafka_topic
        self.connection = connection(settings)
        self.outbox = _outbox(outbox_path(settings), shared)
        self._sweeper: asyncio.Task[None] | None = None
        self.results = Results(settings.kafka_resp_topic, self.outbox, self.connection, on_delivered=self._check_room)
        self.link = LinkState("consumer")
        self.max_pending = settings.max_pending
        self._room = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stop_listening: Callable[[], None] | None = None
        self.paused = False
        self.taken = 0
        self.malformed = 0

    # --- lifecycle -------------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Re-send what the outbox holds for final jobs, then consume. Never waits for a broker."""
        ids = await self.outbox.open()
        self._stop_listening = self.manager.events.on(JobFinal, lambda event: self._on_final(event.job))
        jobs = {job.id: job for job in await self.manager.get_many(list(ids))}
        # unknown ids: their message was not committed (it comes again) or their job expired
        await self.outbox.remove(ids - jobs.keys())
        final = [job for job in jobs.values() if job.final]
        for job in final:
            self.results.push(job)
        if jobs:
            log.info(
                "kafka outbox: %d results to send again, %d jobs not final yet", len(final), len(jobs) - len(final)
            )
        self._check_room()
        self.results.start()
        self._task = asyncio.create_task(self._consume_forever(), name="poulpe-kafka-consumer")
        if self.outbox.shared:  # results a dead process owed go from a live one (kafka_handover.py)
            from poulpe.intake.kafka_handover import SharedOutbox, sweep_forever

            assert isinstance(self.outbox, SharedOutbox)
            sweep = sweep_forever(self.outbox, self.manager.get_many, self.results.push)
            self._sweeper = asyncio.create_task(sweep, name="poulpe-kafka-handover")

    async def stop_consuming(self) -> None:
        self._stopping.set()
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    await asyncio.shield(self._task)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def stop(self, flush_s: float) -> None:
        """After the manager drained: results of jobs that ended meanwhile go out (up to `flush_s` s)."""
        await self.stop_consuming()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if self._stop_listening is not None:
            self._stop_listening()
        await self.results.stop(flush_s)
        await self.outbox.close()

    def report(self) -> dict[str, Any]:
        """The Kafka part of /sys_info and /health (no servers, no credentials)."""
        return {
            "consumer": self.link.report(),
            "producer": self.results.link.report(),
            "topic": self.topic,
            "resp_topic": self.results.topic,
            "group": self.settings.kafka_group,
            "pending": len(self.outbox),
            "max_pending": self.max_pending,
            "paused": self.paused,
            "taken": self.taken,
            "malformed": self.malformed,
            "results_sent": self.results.delivered,
        }

    # --- results ---------------------------------------------------------------------------------------------
    def _on_final(self, job: Job) -> None:
        if job.source == SOURCE or job.id in self.outbox.ids:
            self.results.push(job)

    async def _settle_outbox(self) -> None:
        """While paused: outbox ids whose job ended in another process (on a shared store, where this process is not
        told) have their result sent from here, and ids whose job expired leave, so the pause cannot last for ever."""
        ids = [job_id for job_id in self.outbox.ids if not self.results.queued(job_id)]
        jobs = {job.id: job for job in await self.manager.get_many(ids)}
        await self.outbox.remove(set(ids) - jobs.keys())
        for job in jobs.values():
            if job.final:
                self.results.push(job)
        self._check_room()

    def _check_room(self) -> None:
        if len(self.outbox) < self.max_pending:
            self._room.set()
        else:
            self._room.clear()

    # --- consuming -------------------------------------------------------------------------------------------
    @property
    def _done(self) -> bool:
        return self._stopping.is_set() or self.manager.draining.is_set()

    async def _consume_forever(self) -> None:
        delay = 0.5
        while not self._done:
            consumer = AIOKafkaConsumer(
                self.topic,
                **self.connection,
                group_id=self.settings.kafka_group,
                enable_auto_commit=False,
                auto_offset_reset="earliest",  # a new group reads what was sent before poulpe first started
                session_timeout_ms=int(self.settings.kafka_session_timeout * 1000),
                heartbeat_interval_ms=max(100, int(self.settings.kafka_session_timeout * 250)),
                request_timeout_ms=max(20_000, int(self.settings.kafka_session_timeout * 2000)),
            )
            try:
                await consumer.start()
                self.link.set("connected")
                delay = 0.5
                await self._consume(consumer)
            except (KafkaError, OSError, TimeoutError) as exc:
                if not self._done:
                    self.link.set("down", exc)
            except Exception as exc:  # a bug: logged with its traceback; the consumer starts again after a pause
                log.exception("kafka consumer failed")
                self.link.set("down", exc)
            finally:
                await close_consumer(consumer)
            if not self._done:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._stopping.wait()
                delay = min(delay * 2, MAX_BACKOFF_S)
        self.link.set("stopped")

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        heard = time.monotonic()
        while not self._done:
            if not self._room.is_set():
                self._pause(consumer)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(PROBE_S):
                        await self._room.wait()
                if not self._room.is_set():
                    await consumer.getmany(timeout_ms=0)  # a poll, so the group keeps this member while it waits
                    await self._settle_outbox()
                    continue
            if self.paused:
                self.paused = False
                consumer.resume(*consumer.paused())
                log.info("kafka consumer resumed: %d jobs pending", len(self.outbox))
            room = max(1, min(BATCH, self.max_pending - len(self.outbox)))
            batch = await consumer.getmany(timeout_ms=500, max_records=room)
            if self._done:
                return  # not committed: read again after a restart
            if not batch:
                if time.monotonic() - heard > PROBE_S:
                    async with asyncio.timeout(PROBE_S * 2):
                        await consumer.topics()  # raises when no broker answers
                    heard = time.monotonic()
                    self.link.set("connected")
                continue
            if await self._take(consumer, batch):
                try:
                    await consumer.commit({tp: msgs[-1].offset + 1 for tp, msgs in batch.items()})
                except CommitFailedError as exc:  # the group rebalanced: another member reads these again
                    log.info("kafka commit skipped after a rebalance: %s", exc)
            heard = time.monotonic()
            self.link.set("connected")

    def _pause(self, consumer: AIOKafkaConsumer) -> None:
        consumer.pause(*consumer.assignment())
        if not self.paused:
            self.paused = True
            log.info("kafka consumer paused: %d jobs pending (--max_pending %d)", len(self.outbox), self.max_pending)

    async def _take(self, consumer: AIOKafkaConsumer, batch: dict[TopicPartition, list[ConsumerRecord]]) -> bool:
        """Store a batch's jobs and send its errors; False when it must be read again (store down, draining)."""
        jobs: list[Job] = []
        errors: list[dict[str, Any]] = []
        for msgs in batch.values():
            for msg in msgs:
                try:
                    jobs.append(self._job(msg))
                except BadRequest as exc:
                    errors.append(error_record(exc.message, exc.field, msg.topic, msg.partition, msg.offset))
        try:
            await self.outbox.add(job.id for job in jobs)
            stored = await self.manager.submit(jobs) if jobs else []
        except Unavailable as exc:
            if not self._done:
                log.warning("kafka batch not taken, read again shortly: %s", exc.message)
                for tp, msgs in batch.items():
                    consumer.seek(tp, msgs[0].offset)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1):
                        await self._stopping.wait()
            return False
        for job, duplicate in stored:
            if duplicate and job.final:
                self.results.push(job)  # a message read again for a finished job: its result goes again
        if errors:
            await self.results.send_errors(errors)
        self.taken += len(jobs)
        self.malformed += len(errors)
        self._check_room()
        return True

    def _job(self, msg: ConsumerRecord) -> Job:
        """The job a message holds, validated as an HTTP body is; raises BadRequest naming the field."""
        value = msg.value
        if not value:
            raise BadRequest("the message has no value: it must be a job object in JSON")
        if len(value) > self.settings.max_body:
            raise BadRequest(f"the message is larger than --max_body ({self.settings.max_body} bytes)")
        job = parse_job(value, self.limits).job
        if msgspec.json.decode(value, type=_Id).id is None:
            job.id = message_id(msg.topic, msg.partition, msg.offset)
        job.source = SOURCE
        if msg.headers:  # a W3C trace context in the record's headers, for a job without a traceparent field
            adopt([job], *from_record_headers(msg.headers))
        return job

"""The response topic: results of Kafka jobs (keyed by job id) and errors of malformed messages, through one producer.

Workers never wait for Kafka: a final job is handed over in memory (`push`) and a sender task produces it. A result
the broker does not acknowledge is sent again with backoff until it is; once acknowledged its id leaves the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from poulpe.intake.kafka_outbox import Outbox
from poulpe.job import Job
from poulpe.responses import encode

log = logging.getLogger("poulpe.kafka")
BATCH = 500
REQUEST_TIMEOUT_MS = 10_000


async def close_quietly(close: Callable[[], Awaitable[None]], within: float = 5.0) -> None:
    """Close an aiokafka client without letting it hang or fail the caller: with the brokers gone, its `stop()` may
    wait on requests that never end, and a cancellation inside it can escape as the caller's own."""
    task = asyncio.ensure_future(close())
    task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved: never "never retrieved"
    try:
        await asyncio.wait({task}, timeout=within)
    except asyncio.CancelledError:  # the caller is cancelled (a stop): the client is closed all the same
        await asyncio.wait({task}, timeout=within)
        raise
    finally:
        if not task.done():
            task.cancel()


async def _give_up_pending(producer: AIOKafkaProducer) -> None:
    """Fail the batches an aiokafka producer still holds, so its `stop()` closes at once. aiokafka has no call for
    this: its sender goes first (a batch failed under it breaks it), then every batch is failed through the
    accumulator, as aiokafka itself does on a fatal error (tests/e2e/test_kafka_close.py sees it still works)."""
    sender = producer._sender.sender_task
    if sender is not None and not sender.done():
        sender.cancel()
        await asyncio.wait({sender})
    accumulator = producer._message_accumulator
    waiting = [batch for batches in accumulator._batches.values() for batch in batches]
    accumulator._pending_batches.update(waiting)  # a batch sent again is not in it any more: failing it would raise
    batches = list(accumulator._pending_batches)
    accumulator.fail_all(KafkaError("poulpe is stopping"))
    for batch in batches:  # retrieved: never "exception was never retrieved"
        for future in (batch.future, batch._drain_waiter):
            if future.done() and not future.cancelled():
                future.exception()


class LinkState:
    """A connection's state, logged once per change (never once per try)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.state = "starting"
        self.error: str | None = None

    def set(self, state: str, error: BaseException | None = None) -> None:
        self.error = (str(error) or type(error).__name__) if error is not None else None
        if state != self.state:
            self.state = state
            if error is not None:
                log.warning("kafka %s %s: %s", self.name, state, self.error)
            else:
                log.info("kafka %s %s", self.name, state)

    def report(self) -> dict[str, Any]:
        return {"state": self.state, "error": self.error} if self.error else {"state": self.state}


def error_record(error: str, field: str | None, topic: str, partition: int, offset: int) -> dict[str, Any]:
    """What a malformed message produces on the response topic."""
    return {
        "type": "error",
        "error": error,
        "field": field,
        "topic": topic,
        "partition": partition,
        "offset": offset,
    }


class Results:
    def __init__(
        self, topic: str, outbox: Outbox, connection: dict[str, Any], *, on_delivered: Callable[[], None]
    ) -> None:
        self.topic = topic
        self.outbox = outbox
        self.connection = connection
        self.on_delivered = on_delivered
        self.link = LinkState("producer")
        self.producer: AIOKafkaProducer | None = None
        self._opening = asyncio.Lock()  # the sender and a batch's errors may both need it: one producer, not two
        self._todo: dict[str, Job] = {}  # by id: a job pushed twice before it is sent goes once
        self._slim: set[str] = set()  # results too large for the topic: sent without `result` and `history`
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()  # set while nothing waits to be sent: a stop's flush waits on it
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self.delivered = 0

    def push(self, job: Job) -> None:
        """Queue a final job's result for the response topic; never blocks."""
        self._todo[job.id] = job
        self._idle.clear()
        self._wake.set()

    def queued(self, job_id: str) -> bool:
        return job_id in self._todo

    def start(self) -> None:
        self._task = asyncio.create_task(self._send_forever(), name="poulpe-kafka-results")

    async def stop(self, flush_s: float) -> None:
        """Send what is queued for up to `flush_s` seconds; what is left stays in the outbox for the next start."""
        if self._task is not None and not self._task.done():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(flush_s):
                    await self._idle.wait()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._close_producer(give_up=True)
        self.link.set("stopped")

    async def send_errors(self, records: Sequence[dict[str, Any]]) -> None:
        """Produce error records and return once the broker acknowledged them (raises KafkaError otherwise)."""
        producer = await self._producer()
        futures = [await producer.send(self.topic, encode(r)) for r in records]
        await asyncio.gather(*futures)

    async def _producer(self) -> AIOKafkaProducer:
        """The one producer, started by whoever needs it first; a second caller meanwhile waits for that one (two
        made at once, the first would be replaced and never closed)."""
        async with self._opening:
            if self.producer is None:
                producer = AIOKafkaProducer(
                    **self.connection, acks="all", request_timeout_ms=REQUEST_TIMEOUT_MS, linger_ms=5
                )
                try:
                    await producer.start()
                except BaseException:
                    await close_quietly(producer.stop)
                    raise
                self.producer = producer
                self.link.set("connected")
            return self.producer

    async def _close_producer(self, *, give_up: bool = False) -> None:
        """`give_up` (a stop, after its flush): what the producer still holds is given up, since unacknowledged
        results stay in the outbox for the next start. Its `stop()` would wait for them for as long as the brokers are
        away, and a stop cut short leaves its sender and metadata tasks retrying for ever."""
        producer, self.producer = self.producer, None
        if producer is None:
            return
        if give_up:
            await _give_up_pending(producer)
        await close_quietly(producer.stop)

    async def _send_forever(self) -> None:
        delay = 0.2
        while True:
            if not self._todo:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
            batch = dict(itertools.islice(self._todo.items(), BATCH))
            try:
                done, trouble = await self._send(batch)
            except (KafkaError, OSError, TimeoutError) as exc:
                done, trouble = [], exc
            except Exception as exc:  # a bug: logged with its traceback, and the sender goes on
                log.exception("sending Kafka results failed")
                done, trouble = [], exc
            for job_id in done:
                if self._todo.get(job_id) is batch[job_id]:
                    del self._todo[job_id]
                self._slim.discard(job_id)
            if done:
                self.delivered += len(done)  # (a result dropped for its size counts as handled)
                await self.outbox.remove(done)
                self.on_delivered()
            if trouble is None:
                delay = 0.2
                self.link.set("connected")
                continue
            self.link.set("down", trouble)
            await self._close_producer()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def _send(self, batch: dict[str, Job]) -> tuple[list[str], BaseException | None]:
        """Produce a batch; the ids done with (acknowledged, or too large to send at all), and what stopped the
        others (they are sent again)."""
        producer = await self._producer()
        acks: dict[str, asyncio.Future[Any]] = {}
        done: list[str] = []  # acknowledged, or dropped for good
        for job_id, job in batch.items():
            try:
                acks[job_id] = await producer.send(self.topic, self._value(job), key=job_id.encode())
            except MessageSizeTooLargeError:
                if self._too_large(job_id):
                    done.append(job_id)
        outcomes = await asyncio.gather(*acks.values(), return_exceptions=True)
        trouble: BaseException | None = None
        for job_id, outcome in zip(acks, outcomes, strict=True):
            if isinstance(outcome, MessageSizeTooLargeError):
                if self._too_large(job_id):
                    done.append(job_id)
            elif isinstance(outcome, BaseException):
                trouble = outcome
            else:
                done.append(job_id)
        return done, trouble

    def _value(self, job: Job) -> bytes:
        result = job.to_result()
        if job.id in self._slim:
            result.update(result=None, history=[], truncated=True)
        return encode({"type": "result", **result})

    def _too_large(self, job_id: str) -> bool:
        """A result the broker refuses for its size goes without its `result` and `history` (GET /task_resp has
        them); refused even so, it is dropped, never retried for ever ahead of the others."""
        if job_id in self._slim:
            log.error(
                "kafka result of job %s is too large for %s even without its result: not sent", job_id, self.topic
            )
            return True
        log.warning("kafka result of job %s is too large for %s: sent without its result", job_id, self.topic)
        self._slim.add(job_id)
        return False

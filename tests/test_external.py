"""External workers in process, on a real SQLite store: the expiry timer follows the earliest lease end (on a clock
the test moves: tests/e2e/test_external_workers.py shows a lease running out on the real clock), and the registry
forgets workers not heard from."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from poulpe import external as external_module
from poulpe.deadletter import DeadLetters
from poulpe.external import ExternalWorkers
from poulpe.job import Job, Method, RetryPolicy, Status
from poulpe.manager import JobManager
from poulpe.store.sqlite import SqliteStore
from tests.clock import Clock


@pytest.fixture
def clock() -> Clock:
    return Clock(time.time())


@pytest.fixture
async def manager(tmp_path: Path, clock: Clock) -> AsyncIterator[JobManager]:
    store = SqliteStore(tmp_path / "jobs.db")
    await store.open()
    manager = JobManager(store, {}, DeadLetters(tmp_path / "dead"), workers=1, clock=clock)
    await manager.start()
    yield manager
    await manager.stop(1)
    await store.close()


def task(job_id: str) -> Job:
    return Job(id=job_id, method=Method.QUEUE, name="t", retry=RetryPolicy(max=1, interval=0), status=Status.QUEUED)


async def status_of(manager: JobManager, job_id: str) -> Status:
    job = await manager.get(job_id)
    assert job is not None
    return job.status


async def reached(manager: JobManager, job_id: str, status: Status) -> None:
    """Once the job has `status` (what runs on the loop and in the store's thread takes real milliseconds, never
    clock time)."""
    deadline = time.monotonic() + 10
    while (now := await status_of(manager, job_id)) is not status:
        assert time.monotonic() < deadline, f"job {job_id} is still {now}, not {status}"
        await asyncio.sleep(0.005)


async def armed(clock: Clock) -> None:
    """Once the expiry timer waits on the clock (it is set in a task of its own)."""
    deadline = time.monotonic() + 10
    while clock.sleeping != 1:
        assert time.monotonic() < deadline, f"{clock.sleeping} timers wait on the clock, not one"
        await asyncio.sleep(0.005)


async def test_leases_expire_in_the_order_they_end(manager: JobManager, clock: Clock) -> None:
    workers = ExternalWorkers(manager, clock=clock, sleep=clock.sleep)
    await workers.start()
    try:
        await manager.submit([task("long"), task("short")])
        await workers.lease("t", "a", 1, 600)  # "long" (due first), ends second
        await workers.lease("t", "b", 1, 60)  # "short", ends first: the timer moves earlier
        await armed(clock)
        clock.advance(59)  # a second before the short lease ends: both still run
        await asyncio.sleep(0.1)
        assert await status_of(manager, "short") is Status.RUNNING
        clock.advance(2)
        await reached(manager, "short", Status.RETRYING)
        assert await status_of(manager, "long") is Status.RUNNING
        await armed(clock)  # the timer was set again, for the next end
        clock.advance(600 - 61 + 1)
        await reached(manager, "long", Status.RETRYING)
        assert [w["jobs"] for w in workers.listing()] == [[], []]
    finally:
        await workers.stop()


async def test_a_worker_not_heard_from_is_forgotten_unless_it_holds_jobs(
    manager: JobManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(external_module, "FORGET_S", 0.1)
    workers = ExternalWorkers(manager)
    await workers.start()
    try:
        await manager.submit([task("held")])
        workers.heartbeat("t", "idle")
        await workers.lease("t", "busy", 1, 60)
        await asyncio.sleep(0.3)
        assert [w["name"] for w in workers.listing()] == ["busy"]
    finally:
        await workers.stop()


async def test_metrics_count_what_external_workers_end_like_any_other_job(manager: JobManager, clock: Clock) -> None:
    workers = ExternalWorkers(manager, clock=clock, sleep=clock.sleep)
    await workers.start()

    def sample(name: str, **labels: str) -> float:
        return manager.metrics.registry.get_sample_value(name, labels) or 0.0

    try:
        await manager.submit([task("done"), task("broken"), task("silent")])
        (done,) = await workers.lease("t", "a", 1, 60)
        await workers.complete(done.id, "a", {"ok": True})
        (broken,) = await workers.lease("t", "a", 1, 60)
        await workers.fail(broken.id, "a", "no disk")  # retry max=1: it runs again
        (silent,) = await workers.lease("t", "b", 1, 60)
        assert silent.id == "silent"
        await armed(clock)
        clock.advance(61)  # its lease ends without a report: a failed attempt too
        await reached(manager, "silent", Status.RETRYING)
        again = await workers.lease("t", "a", 2, 60)
        assert sorted(job.id for job in again) == ["broken", "silent"]
        for job in again:
            await workers.fail(job.id, "a", "still broken")  # no retry left: dead
        assert sample("poulpe_jobs_succeeded_total", method="QUEUE") == 1
        assert sample("poulpe_jobs_retried_total", method="QUEUE") == 2
        assert sample("poulpe_jobs_dead_total", method="QUEUE") == 2
        assert sample("poulpe_attempts_failed_total", method="QUEUE") == 4
        assert sample("poulpe_attempt_duration_seconds_count", method="QUEUE") == 5
        assert sample("poulpe_job_lateness_seconds_count") == 5  # one per leased attempt
    finally:
        await workers.stop()

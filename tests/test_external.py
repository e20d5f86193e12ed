"""External workers in process, on a real SQLite store: the expiry timer follows the earliest lease end, and the
registry forgets workers not heard from."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from poulpe import external as external_module
from poulpe.deadletter import DeadLetters
from poulpe.external import ExternalWorkers
from poulpe.job import Job, Method, RetryPolicy, Status
from poulpe.manager import JobManager
from poulpe.store.sqlite import SqliteStore


@pytest.fixture
async def manager(tmp_path: Path) -> AsyncIterator[JobManager]:
    store = SqliteStore(tmp_path / "jobs.db")
    await store.open()
    manager = JobManager(store, {}, DeadLetters(tmp_path / "dead"), workers=1)
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


async def test_leases_expire_in_the_order_they_end(manager: JobManager) -> None:
    workers = ExternalWorkers(manager)
    await workers.start()
    try:
        await manager.submit([task("long"), task("short")])
        await workers.lease("t", "a", 1, 0.4)  # "long" (due first), ends second
        await workers.lease("t", "b", 1, 0.1)  # "short", ends first: the timer moves earlier
        await asyncio.sleep(0.25)
        assert await status_of(manager, "short") is Status.RETRYING
        assert await status_of(manager, "long") is Status.RUNNING
        await asyncio.sleep(0.3)
        assert await status_of(manager, "long") is Status.RETRYING  # the timer was set again for the next end
        assert workers.listing()[0]["jobs"] == []
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


async def test_metrics_count_what_external_workers_end_like_any_other_job(manager: JobManager) -> None:
    workers = ExternalWorkers(manager)
    await workers.start()

    def sample(name: str, **labels: str) -> float:
        return manager.metrics.registry.get_sample_value(name, labels) or 0.0

    try:
        await manager.submit([task("done"), task("broken"), task("silent")])
        (done,) = await workers.lease("t", "a", 1, 60)
        await workers.complete(done.id, "a", {"ok": True})
        (broken,) = await workers.lease("t", "a", 1, 60)
        await workers.fail(broken.id, "a", "no disk")  # retry max=1: it runs again
        (silent,) = await workers.lease("t", "b", 1, 0.05)
        assert silent.id == "silent"
        await asyncio.sleep(0.3)  # its lease ends without a report: a failed attempt too
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

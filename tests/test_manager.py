"""The JobManager path on a real SQLite store, with a runner that records what ran."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from poulpe.deadletter import DeadLetters
from poulpe.job import Job, Method, Status
from poulpe.manager import JobManager
from poulpe.runners import Outcome
from poulpe.store.sqlite import SqliteStore


class SlowSaves(SqliteStore):
    """Final writes wait for a gate: the time a busy disk takes to commit."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.gate = asyncio.Event()

    async def save(self, job: Job) -> None:
        if job.final:
            await self.gate.wait()
        await super().save(job)

    async def save_many(self, jobs: Sequence[Job]) -> list[BaseException | None]:
        if any(job.final for job in jobs):
            await self.gate.wait()
        return await super().save_many(jobs)


class Recorder:
    def __init__(self) -> None:
        self.started: list[str] = []

    async def run(self, job: Job, attempt: int, timeout: float) -> Outcome:  # noqa: ASYNC109
        self.started.append(job.id)
        return Outcome(ok=True, result={"ran": job.id})

    async def close(self) -> None:
        pass


def job(job_id: str) -> Job:
    return Job(id=job_id, method=Method.GET, name="http://127.0.0.1:9/x", status=Status.QUEUED)


async def test_a_worker_takes_its_next_job_while_the_last_outcome_is_being_stored(tmp_path: Path) -> None:
    store = SlowSaves(tmp_path / "jobs.db")
    await store.open()
    runner = Recorder()
    manager = JobManager(store, {Method.GET: runner}, DeadLetters(tmp_path / "dead"), workers=1)
    await manager.start()
    try:
        await manager.submit([job("first"), job("second")])
        for _ in range(100):
            if runner.started == ["first", "second"]:
                break
            await asyncio.sleep(0.01)
        assert runner.started == ["first", "second"]  # the single worker did not wait for the first commit
        waiting = asyncio.create_task(manager.wait("first", 5))
        await asyncio.sleep(0.05)
        assert not waiting.done()  # nobody hears of a result before it is stored
        store.gate.set()
        done = await waiting
        assert done is not None and done.status is Status.SUCCEEDED
        assert (await store.get("first")).status is Status.SUCCEEDED  # type: ignore[union-attr]
    finally:
        store.gate.set()
        await manager.stop(1)
        await store.close()


class HeldOutcomes(SqliteStore):
    """Outcomes wait for a gate before they are written: a commit slower than any attempt (a loaded disk)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.gate = asyncio.Event()

    async def save_many(self, jobs: Sequence[Job]) -> list[BaseException | None]:
        await self.gate.wait()
        return await super().save_many(jobs)


async def test_workers_run_ahead_of_the_store_by_one_outcome_each_so_a_crash_reruns_two_jobs_per_worker_at_most(
    tmp_path: Path,
) -> None:
    store = HeldOutcomes(tmp_path / "jobs.db")
    await store.open()
    runner = Recorder()
    workers = 3
    manager = JobManager(store, {Method.GET: runner}, DeadLetters(tmp_path / "dead"), workers=workers)
    await manager.start()
    try:
        await manager.submit([job(f"j{n}") for n in range(40)])
        await asyncio.sleep(0.3)
        # run, outcome not stored: what a kill -9 now would run again. One running and one decided per worker.
        assert len(runner.started) == 2 * workers, runner.started
        store.gate.set()
        for n in range(40):
            done = await manager.wait(f"j{n}", 5)
            assert done is not None and done.status is Status.SUCCEEDED
        assert sorted(runner.started) == sorted(f"j{n}" for n in range(40))
    finally:
        store.gate.set()
        await manager.stop(1)
        await store.close()

"""A bulk action stopped in the middle of a chunk resumes and acts on no job twice (SPEC 10.4), on a real SQLite
file: the first runner is stopped halfway through its second chunk, as a kill would stop it, and a second one
takes the action over."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from poulpe.actions import CHUNK, Actions
from poulpe.deadletter import DeadLetters
from poulpe.job import Job, Method, Status
from poulpe.labels import JobFilter
from poulpe.manager import JobManager
from poulpe.store.sqlite import SqliteStore


class Counting:
    """The manager's commands, counted; the first runner's task is cancelled once `stop_after` retries were made."""

    def __init__(self, manager: JobManager, stop_after: int | None) -> None:
        self.manager = manager
        self.stop_after = stop_after
        self.retried: Counter[str] = Counter()
        self.running: list[asyncio.Task[None]] = []  # the runner's task: cancelled as a kill would stop it

    async def get(self, job_id: str) -> Job | None:
        return await self.manager.get(job_id)

    async def retry_dead_many(self, job_ids: Sequence[str], mark: str) -> list[str]:
        cut = self.stop_after is not None and sum(self.retried.values()) + len(job_ids) >= self.stop_after
        if cut:  # the process stops after writing part of the chunk, before the rest and before its progress
            assert self.stop_after is not None
            job_ids = job_ids[: self.stop_after - sum(self.retried.values())]
        before = await self.marks(job_ids, mark)
        failed = await self.manager.retry_dead_many(job_ids, mark)
        self.retried.update((await self.marks(job_ids, mark)) - before)  # each time a job was marked again
        if cut:
            for task in self.running:
                task.cancel()
            await asyncio.sleep(0)  # the kill: the runner stops here
        return failed

    async def marks(self, job_ids: Sequence[str], mark: str) -> Counter[str]:
        return Counter({job.id: (job.acted_by or []).count(mark) for job in await self.manager.store.get_many(job_ids)})

    async def cancel(self, job_id: str, mark: str | None = None) -> Job:
        return await self.manager.cancel(job_id, mark)

    async def run_now(self, job_id: str, mark: str | None = None) -> Job:
        return await self.manager.run_now(job_id, mark)

    async def delete_dead(self, job_id: str) -> bool:
        return await self.manager.delete_dead(job_id)


async def test_an_action_stopped_inside_a_chunk_resumes_without_acting_twice(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "jobs.db")
    await store.open()
    manager = JobManager(store, {}, DeadLetters(tmp_path / "dead"), workers=1)
    await manager.start()
    now = time.time()
    dead = [
        Job(id=f"d{n}", method=Method.QUEUE, name="resize", status=Status.DEAD, seq=n + 1, created_at=now,
            finished_at=now, labels={"team": "pay"})
        for n in range(2 * CHUNK + 50)
    ]  # fmt: skip
    await store.add(dead)

    first = Counting(manager, stop_after=CHUNK + 50)
    runner = Actions(store, first, hold=60, clock=time.time)
    action = await runner.create("retry", JobFilter(label=["team:pay"]))
    first.running = [task for task in asyncio.all_tasks() if task.get_name() == f"poulpe-action-{action.id}"]
    await asyncio.wait(first.running)
    cut = await store.get_action(action.id)
    assert cut is not None and cut.done == CHUNK and cut.finished_at is None  # the second chunk was cut

    second = Counting(manager, stop_after=None)
    resumed = Actions(store, second, hold=60, clock=time.time)
    resumed.start()
    for _ in range(500):
        state = await store.get_action(action.id)
        if state is not None and state.finished_at is not None:
            break
        await asyncio.sleep(0.01)
    await resumed.stop()
    assert state is not None and (state.done, state.errors) == (len(dead), 0)
    retried = first.retried + second.retried
    assert set(retried.values()) == {1} and second.retried  # none twice; the second runner did the rest
    jobs = await store.get_many([job.id for job in dead])
    assert all(job.status is Status.QUEUED and job.acted_by == [action.id] for job in jobs)  # every job, once
    await manager.stop(0)
    await store.close()

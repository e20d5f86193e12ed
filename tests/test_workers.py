"""Routing by `cc`: a job runs only on the workers it names, others run on the first free worker.

Workers pull from the ready structure (poulpe/dispatch/ready.py): a due job is `take`n into it and a free worker
gets it from there (`Attempt.work`, poulpe/outcome.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import cast

from poulpe.dispatch.ready import Ready
from poulpe.job import Job, Method
from poulpe.outcome import Attempt, Finish
from poulpe.workers import Workers


class Story(Attempt):
    """The real worker loop (pull, run, free the worker) around the story's own attempt."""

    def __init__(self, ready: Ready, run: Callable[[Job, int], Awaitable[None]]) -> None:
        super().__init__(ready, {}, cast(Finish, None), node="test", job_timeout=1.0, clock=time.time)
        self.story = run

    async def run(self, job: Job, worker: int) -> None:
        await self.story(job, worker)


def job(job_id: str, cc: tuple[int, ...] = (), seq: int = 0) -> Job:
    return Job(id=job_id, method=Method.GET, name="http://x", cc=cc, seq=seq)


async def test_cc_jobs_run_only_on_the_named_workers_and_others_take_the_first_free() -> None:
    ran: list[tuple[str, int]] = []
    release = asyncio.Event()

    async def run(j: Job, worker: int) -> None:
        ran.append((j.id, worker))
        await release.wait()

    ready = Ready(4)
    workers = Workers(ready, Story(ready, run))
    workers.start()
    await asyncio.sleep(0)
    ready.take(job("only-3", cc=(3,), seq=1))
    ready.take(job("any-a", seq=2))
    ready.take(job("any-b", seq=3))
    ready.take(job("only-3-again", cc=(3,), seq=4))
    await asyncio.sleep(0.01)
    assert sorted(ran) == [("any-a", 0), ("any-b", 1), ("only-3", 3)]
    assert ready.only_for(3) == 1 and len(ready) == 1
    release.set()
    await asyncio.sleep(0.01)
    assert ("only-3-again", 3) in ran
    await workers.stop(1)


async def test_a_freed_worker_takes_the_earliest_job_it_may_run() -> None:
    ran: list[str] = []
    gate = asyncio.Event()

    async def run(j: Job, worker: int) -> None:
        ran.append(j.id)
        if j.id == "blocker":
            await gate.wait()

    ready = Ready(1)
    workers = Workers(ready, Story(ready, run))
    workers.start()
    await asyncio.sleep(0)
    ready.take(job("blocker", seq=1))
    ready.take(job("third", seq=4))
    later = job("second", cc=(0,), seq=3)
    later.run_at = -1.0  # due earlier than "third"
    ready.take(later)
    gate.set()
    await asyncio.sleep(0.01)
    assert ran == ["blocker", "second", "third"]
    await workers.stop(1)


async def test_stop_gives_running_jobs_their_grace_then_cancels() -> None:
    cancelled = asyncio.Event()

    async def run(j: Job, worker: int) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    ready = Ready(2)
    workers = Workers(ready, Story(ready, run))
    workers.start()
    await asyncio.sleep(0)
    ready.take(job("slow"))
    ready.take(job("waiting", cc=(0,)))
    await asyncio.sleep(0.01)
    left = await workers.stop(0.05)
    assert cancelled.is_set() and [j.id for j in left] == ["waiting"]

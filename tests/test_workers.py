"""Routing by `cc`: a job runs only on the workers it names, others run on the first free worker."""

from __future__ import annotations

import asyncio

from poulpe.job import Job, Method
from poulpe.workers import Workers


def job(job_id: str, cc: tuple[int, ...] = (), seq: int = 0) -> Job:
    return Job(id=job_id, method=Method.GET, name="http://x", cc=cc, seq=seq)


async def test_cc_jobs_run_only_on_the_named_workers_and_others_take_the_first_free() -> None:
    ran: list[tuple[str, int]] = []
    release = asyncio.Event()

    async def run(j: Job, worker: int) -> None:
        ran.append((j.id, worker))
        await release.wait()

    workers = Workers(4, run)
    workers.start()
    await asyncio.sleep(0)
    workers.push(job("only-3", cc=(3,), seq=1))
    workers.push(job("any-a", seq=2))
    workers.push(job("any-b", seq=3))
    workers.push(job("only-3-again", cc=(3,), seq=4))
    await asyncio.sleep(0.01)
    assert sorted(ran) == [("any-a", 0), ("any-b", 1), ("only-3", 3)]
    assert workers.only_for(3) == 1 and workers.ready == 1
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

    workers = Workers(1, run)
    workers.start()
    await asyncio.sleep(0)
    workers.push(job("blocker", seq=1))
    workers.push(job("third", seq=4))
    later = job("second", cc=(0,), seq=3)
    later.run_at = -1.0  # due earlier than "third"
    workers.push(later)
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

    workers = Workers(2, run)
    workers.start()
    await asyncio.sleep(0)
    workers.push(job("slow"))
    workers.push(job("waiting", cc=(0,)))
    await asyncio.sleep(0.01)
    left = await workers.stop(0.05)
    assert cancelled.is_set() and [j.id for j in left] == ["waiting"]

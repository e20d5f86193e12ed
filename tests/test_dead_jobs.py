"""Dead jobs on the JobManager with a real SQLite store: a letter owed outlives the store's --result_ttl."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

from poulpe.deadletter import DeadLetters
from poulpe.job import Job, Method, Status
from poulpe.manager import JobManager
from poulpe.runners import Outcome
from poulpe.store.sqlite import SqliteStore
from tests.clock import Clock
from tests.mounts import Mounts


class Refused:
    """A target that refuses for good: every job dies on its first attempt."""

    async def run(self, job: Job, attempt: int, timeout: float) -> Outcome:  # noqa: ASYNC109
        return Outcome(ok=False, final=True, error="refused")

    async def close(self) -> None:
        pass


async def test_an_owed_letter_is_written_even_after_the_store_forgot_its_job(tmp_path: Path, mounts: Mounts) -> None:
    source = tmp_path / "dead-source"
    source.mkdir()
    dead = mounts.read_only(source, tmp_path / "dead")
    store = SqliteStore(tmp_path / "jobs.db")
    await store.open()
    manager = JobManager(store, {Method.GET: Refused()}, DeadLetters(dead), workers=1, result_ttl=1.0)
    await manager.start()
    try:
        job = Job(id="outlives", method=Method.GET, name="http://127.0.0.1:9/x", status=Status.QUEUED)
        await manager.submit([job])
        done = await manager.wait("outlives", 5)
        assert done is not None and done.status is Status.DEAD
        assert "outlives" in manager.dead_jobs.owed

        deadline = time.monotonic() + 15
        while await store.get("outlives") is not None:  # the purger forgets it after --result_ttl
            assert time.monotonic() < deadline, "the job was not purged"
            await asyncio.sleep(0.2)
        kept = await manager.dead_jobs.find("outlives")
        assert kept is not None and kept.status is Status.DEAD

        mounts.writable(dead)
        while manager.dead_jobs.owed:
            assert time.monotonic() < deadline + 30, "the owed letter was not written"
            await asyncio.sleep(0.2)
        [written] = dead.glob("*/outlives.json")
        assert json.loads(written.read_text())["status"] == "dead"
        assert manager.dead_jobs.held == {}
    finally:
        await manager.stop(1)
        await store.close()


class CountingLetters(DeadLetters):
    """The dead-letter directory, counting how often poulpe tries to write a letter."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.tries = 0

    async def write(self, job: Job) -> Path:
        self.tries += 1
        return await super().write(job)


async def until(check: Callable[[], bool]) -> None:
    """Let poulpe's tasks run (their file writes go through threads) until `check` holds; 10 s at most."""
    deadline = time.monotonic() + 10
    while not check():
        assert time.monotonic() < deadline, "not reached in 10 s"
        await asyncio.sleep(0.01)


async def test_an_owed_letter_is_tried_again_with_backoff_and_nothing_runs_once_it_is_written(
    tmp_path: Path, mounts: Mounts
) -> None:
    source = tmp_path / "dead-source"
    source.mkdir()
    dead = mounts.read_only(source, tmp_path / "dead")
    store = SqliteStore(tmp_path / "jobs.db")
    await store.open()
    letters = CountingLetters(dead)
    manager = JobManager(store, {Method.GET: Refused()}, letters, workers=1)
    clock = Clock(float(int(time.time())))  # whole seconds, moved by quarters: sums stay exact
    manager.dead_jobs.sleep = clock.sleep  # the backoff waits on the test's clock, which moves only when told
    await manager.start()
    try:
        assert not manager.dead_jobs.settling  # nothing owed: no timer
        await manager.submit([Job(id="backoff", method=Method.GET, name="http://127.0.0.1:9/x")])
        done = await manager.wait("backoff", 5)
        assert done is not None and done.status is Status.DEAD
        assert letters.tries == 1  # the first try, at death
        # then after 1 s, 2 s more and 4 s more: not a tight loop
        for after in (1.0, 2.0, 4.0):
            await until(lambda: clock.sleeping == 1)
            tries = letters.tries
            clock.advance(after - 0.25)
            await asyncio.sleep(0.05)
            assert letters.tries == tries, f"tried again before {after} s"
            clock.advance(0.25)
            await until(lambda: letters.tries == tries + 1)  # noqa: B023  (awaited in this turn of the loop)
            if after == 2.0:
                assert manager.dead_jobs.settling and manager.dead_jobs.owed  # still refused: tried again later
                mounts.writable(dead)  # the next try writes it

        await until(lambda: not manager.dead_jobs.owed and not manager.dead_jobs.settling)
        assert letters.tries == 4
        assert clock.sleeping == 0  # nothing polls once nothing is owed
        clock.advance(3600)
        await asyncio.sleep(0.05)
        assert letters.tries == 4
        assert list(dead.glob("*/backoff.json"))
    finally:
        await manager.stop(1)
        await store.close()


async def test_a_bulk_retry_chunk_retries_its_dead_jobs_at_once_and_their_letters_go_now_or_later(
    tmp_path: Path, mounts: Mounts
) -> None:
    source = tmp_path / "dead-source"
    source.mkdir()
    store = SqliteStore(tmp_path / "jobs.db")
    await store.open()
    manager = JobManager(store, {Method.GET: Refused()}, DeadLetters(source), workers=1)
    await manager.start()
    try:
        await manager.controls.pause_all(True)  # the retried jobs only wait: what is told is the retry
        now = time.time()
        dead = [Job(id=f"d{n}", method=Method.GET, name="http://127.0.0.1:9/x", status=Status.DEAD, seq=n + 1,
                    created_at=now, finished_at=now) for n in range(6)]  # fmt: skip
        await store.add([*dead, Job(id="alive", method=Method.GET, name="http://127.0.0.1:9/x", created_at=now)])
        for job in dead:
            await manager.dead_jobs.letters.write(job)
        await store.delete("d5")  # forgotten by the store (--result_ttl): its letter is all there is

        failed = await manager.retry_dead_many(["d0", "d1", "alive", "d5"], "act-1")
        assert failed == ["job alive is queued already"]
        retried = {job.id: job for job in await store.get_many(["d0", "d1", "d5"])}
        assert all(job.status is Status.QUEUED and job.acted_by == ["act-1"] for job in retried.values())
        assert sorted(path.stem for path in source.glob("*/*.json")) == ["d2", "d3", "d4"]
        assert await manager.retry_dead_many(["d0", "d1"], "act-1") == []  # done before a restart: skipped
        assert (await store.get("d0")).acted_by == ["act-1"]  # type: ignore[union-attr]

        mounts.read_only(source, tmp_path / "dead")  # the letters' directory refuses removals now
        manager.dead_jobs.letters.root = tmp_path / "dead"
        assert await manager.retry_dead_many(["d2", "d3"], "act-1") == []
        assert manager.dead_jobs.unremoved == {"d2", "d3"}  # retried all the same; the letters go later
        assert all(job.status is Status.QUEUED for job in await store.get_many(["d2", "d3"]))
        listed, total = await manager.dead_jobs.page(page=1, size=50)
        assert [item["id"] for item in listed] == ["d4"] and total == 1
    finally:
        await manager.stop(1)
        await store.close()

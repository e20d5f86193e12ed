"""The storage contract, run against every backend: SQLite, and Redis on a real redis-server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from poulpe.job import Job, Method, Status
from poulpe.store.base import Store
from poulpe.store.redis import RedisStore
from poulpe.store.sqlite import SqliteStore
from tests.redis_server import RedisServer

StoreFactory = Callable[[pytest.FixtureRequest, Path], Store]


def sqlite_store(request: pytest.FixtureRequest, tmp: Path) -> Store:
    return SqliteStore(tmp / "jobs.db")


def redis_store(request: pytest.FixtureRequest, tmp: Path) -> Store:
    server: RedisServer = request.getfixturevalue("redis_server")
    return RedisStore(server.url, prefix=request.getfixturevalue("redis_prefix"), owner="contract")


BACKENDS: dict[str, StoreFactory] = {"sqlite": sqlite_store, "redis": redis_store}


@pytest.fixture(params=sorted(BACKENDS))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    backend = BACKENDS[request.param](request, tmp_path)
    await backend.open()
    yield backend
    await backend.close()


def make(job_id: str, seq: int, *, run_at: float = 0.0, status: Status = Status.QUEUED, **kw: object) -> Job:
    return Job(
        id=job_id,
        method=Method.GET,
        name="http://127.0.0.1/x",
        seq=seq,
        run_at=run_at,
        status=status,
        created_at=time.time(),
        **kw,
    )  # type: ignore[arg-type]


async def test_a_known_id_is_stored_once_and_answered_as_duplicate(store: Store) -> None:
    first = await store.add([make("a", 1, meta={"v": 1})])
    again = await store.add([make("a", 2, meta={"v": 2}), make("b", 3)])
    assert first == [(first[0][0], False)]
    assert again[0][1] is True and again[0][0].meta == {"v": 1}
    assert again[1][1] is False
    assert (await store.get("a")).meta == {"v": 1}  # type: ignore[union-attr]


async def test_concurrent_adds_share_commits_and_all_land(store: Store) -> None:
    results = await asyncio.gather(*(store.add([make(f"j{n}", n)]) for n in range(300)))
    assert all(not dup for [(_, dup)] in results)
    assert len(await store.get_many([f"j{n}" for n in range(300)])) == 300


async def test_the_same_id_submitted_concurrently_is_new_exactly_once(store: Store) -> None:
    results = await asyncio.gather(*(store.add([make("same", n, meta={"n": n})]) for n in range(1, 51)))
    new = [job for [(job, dup)] in results if not dup]
    assert len(new) == 1
    assert all(job.meta == new[0].meta for [(job, _)] in results)


async def test_pending_lists_every_unfinished_job_with_its_due_time(store: Store) -> None:
    await store.add([make("late", 1, run_at=200.0, status=Status.SCHEDULED), make("now", 2, run_at=100.0)])
    await store.add([make("done", 3)])
    done = await store.get("done")
    assert done is not None
    done.status, done.finished_at = Status.SUCCEEDED, time.time()
    await store.save(done)
    pending = sorted(await store.pending())
    assert [(p.run_at, p.id, p.status) for p in pending] == [
        (100.0, "now", Status.QUEUED),
        (200.0, "late", Status.SCHEDULED),
    ]


async def test_a_running_job_is_visible_as_running_to_recovery(store: Store) -> None:
    [(job, _)] = await store.add([make("r", 1)])
    job.begin_attempt(0)
    store.save_soon(job)
    await store.save(job)  # writes are applied in order: after this, the soon-write is in too
    assert [p.status for p in await store.pending()] == [Status.RUNNING]


async def test_final_jobs_are_counted_per_day_and_purged_after_their_ttl(store: Store) -> None:
    await store.add([make("ok", 1), make("bad", 2), make("young", 3)])
    day = time.strftime("%Y-%m-%d", time.gmtime())
    for job_id, status, finished in (
        ("ok", Status.SUCCEEDED, 10.0),
        ("bad", Status.DEAD, 10.0),
        ("young", Status.SUCCEEDED, time.time()),
    ):
        job = await store.get(job_id)
        assert job is not None
        job.status, job.finished_at = status, finished
        await store.save(job)
    old_day = time.strftime("%Y-%m-%d", time.gmtime(10.0))
    assert await store.day_counts(old_day) == {"succeeded": 1, "failed": 1}
    assert await store.day_counts(day) == {"succeeded": 1, "failed": 0}
    assert await store.purge(finished_before=time.time() - 60) == 2
    assert await store.get("ok") is None and await store.get("young") is not None


async def test_writes_issued_together_apply_in_order_and_count_every_finish(store: Store) -> None:
    jobs = [job for job, _ in await store.add([make(f"w{n}", n) for n in range(20)])]
    first = jobs[0]
    first.begin_attempt(0)
    store.save_soon(first)  # running ...
    for job in jobs:
        job.status, job.finished_at = Status.SUCCEEDED, 86400.0 * 3 + 5
    await asyncio.gather(*(store.save(job) for job in jobs))  # ... then succeeded, in the same commit
    assert (await store.get("w0")).status is Status.SUCCEEDED  # type: ignore[union-attr]
    assert await store.day_counts("1970-01-04") == {"succeeded": 20, "failed": 0}


async def test_cancel_and_delete(store: Store) -> None:
    [(job, _)] = await store.add([make("c", 1, status=Status.SCHEDULED, run_at=time.time() + 60)])
    job.status, job.finished_at = Status.CANCELLED, time.time()
    await store.save(job)
    assert (await store.get("c")).status is Status.CANCELLED  # type: ignore[union-attr]
    assert await store.pending() == []
    assert await store.delete("c") is True
    assert await store.delete("c") is False


async def test_listing_is_newest_first_and_filters(store: Store) -> None:
    jobs = [make(f"l{n}", n) for n in range(1, 8)]
    jobs.append(Job(id="q1", method=Method.QUEUE, name="resize", seq=8, created_at=1.0))
    await store.add(jobs)
    page = await store.list_jobs(size=3)
    assert page.total == 8 and [j.id for j in page.jobs] == ["q1", "l7", "l6"]
    page2 = await store.list_jobs(size=3, page=2)
    assert [j.id for j in page2.jobs] == ["l5", "l4", "l3"]
    assert [j.id for j in (await store.list_jobs(method="QUEUE", name="resize")).jobs] == ["q1"]
    assert (await store.list_jobs(status=Status.DEAD)).total == 0
    assert (await store.counts())["queued"] == 8
    assert await store.max_seq() == 8


async def test_a_store_reopened_holds_what_was_acknowledged(tmp_path: Path) -> None:
    first = SqliteStore(tmp_path / "again.db")
    await first.open()
    await first.add([make("kept", 1, run_at=5.0, status=Status.SCHEDULED)])
    await first.close()
    second = SqliteStore(tmp_path / "again.db")
    await second.open()
    try:
        assert [(p.id, p.run_at) for p in await second.pending()] == [("kept", 5.0)]
        assert await second.ping() is True
    finally:
        await second.close()

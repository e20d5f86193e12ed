"""The storage contract of bursts and windows (SPEC 10.2), run against every backend: start deadlines found again
after a restart, unique windows, debounce windows."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from poulpe.bursts import replace_pending
from poulpe.job import Job, Status
from poulpe.store.base import Store
from poulpe.store.redis import RedisStore
from poulpe.store.redis_partitions import PartitionedStore
from poulpe.store.sqlite import SqliteStore
from tests.store.test_contract import make, store

__all__ = ["store"]  # the backend fixture, SQLite and Redis


async def window_entries(store: Store) -> int:
    """How many window entries the backend holds (open windows in memory, the jobs' records hold them; or Redis's
    `u:` and `d:` keys)."""
    if isinstance(store, SqliteStore):
        return len(store.windows.unique.open) + len(store.windows.debounce.pending)
    parts = store.parts if isinstance(store, PartitionedStore) else [store]
    found = 0
    for part in parts:
        assert isinstance(part, RedisStore)
        found += len([key async for key in part.redis.scan_iter(part.base + "[ud]:*")])
    return found


async def test_the_deadlines_of_jobs_waiting_for_their_first_attempt_are_found_again(store: Store) -> None:
    await store.add(
        [
            make("d-waits", 1, deadline=100.0),
            make("d-scheduled", 2, deadline=50.0, status=Status.SCHEDULED, run_at=10.0),
            make("no-deadline", 3),
            make("d-retrying", 4, deadline=100.0, status=Status.RETRYING, attempts=1),
            make("d-done", 5, deadline=100.0, status=Status.SUCCEEDED, finished_at=1.0),
        ]
    )
    assert sorted(await store.deadlines()) == [(50.0, 2, "d-scheduled"), (100.0, 1, "d-waits")]


def windowed(job_id: str, seq: int, key: str, window: float, **kw: object) -> Job:
    job = make(job_id, seq, **kw)
    job.unique, job.unique_until = key, job.created_at + window
    return job


async def test_a_unique_key_makes_one_job_within_its_window_and_a_new_one_after(store: Store) -> None:
    [(_, dup)] = await store.add([windowed("u1", 1, "report", 0.4)])
    assert not dup
    [(again, dup)] = await store.add([windowed("u2", 2, "report", 0.4)])
    assert dup and again.id == "u1"
    assert await store.get("u2") is None
    [(_, dup)] = await store.add([windowed("u3", 3, "other-report", 0.4)])
    assert not dup
    await asyncio.sleep(0.5)
    [(later, dup)] = await store.add([windowed("u4", 4, "report", 0.4)])
    assert not dup and later.id == "u4"


async def test_one_batch_and_concurrent_submissions_make_one_job_per_unique_key(store: Store) -> None:
    answers = await store.add([windowed(f"b{n}", n, "batch", 5) for n in range(1, 6)])
    assert [(job.id, dup) for job, dup in answers] == [("b1", False)] + [("b1", True)] * 4
    results = await asyncio.gather(*(store.add([windowed(f"c{n}", 10 + n, "race", 5)]) for n in range(50)))
    new = [job.id for [(job, dup)] in results if not dup]
    assert len(new) == 1 and {job.id for [(job, _)] in results} == set(new)


async def test_a_known_id_stays_a_duplicate_of_itself_whatever_its_unique_key(store: Store) -> None:
    await store.add([windowed("same", 1, "k1", 5)])
    [(job, dup)] = await store.add([windowed("same", 2, "k2", 5)])
    assert dup and job.id == "same"
    [(job, dup)] = await store.add([windowed("fresh", 3, "k2", 5)])
    assert not dup, "the duplicate id took no window"


async def test_unique_windows_leave_nothing_behind_once_they_end(store: Store) -> None:
    await store.add([windowed(f"w{n}", n, f"key-{n}", 0.2) for n in range(1, 21)])
    await asyncio.sleep(0.3)
    await store.add([windowed("last", 100, "key-last", 0.2)])
    await asyncio.sleep(0.3)
    await store.add([windowed("sweep", 101, "key-sweep", 60)])
    assert await window_entries(store) == 1  # the open window only


def debounced(job_id: str, seq: int, key: str, *, delay: float, max_wait: float | None = None, **kw: object) -> Job:
    job = make(job_id, seq, status=Status.SCHEDULED, **kw)
    job.debounce, job.run_at = key, job.created_at + delay
    job.debounce_until = None if max_wait is None else job.created_at + max_wait
    return job


def replacing(new: Job) -> Callable[[Job], Job | None]:
    return lambda waiting: replace_pending(waiting, new, time.time())


async def test_a_debounce_submission_replaces_the_waiting_job_and_moves_its_time(store: Store) -> None:
    first = debounced("d1", 1, "hook", delay=1, max_wait=1.5, meta={"n": 1})
    assert await store.debounce(first, replacing(first)) == (first, False)
    second = debounced("d2", 2, "hook", delay=3, meta={"n": 2}, params={"last": True})
    stored, replaced = await store.debounce(second, replacing(second))
    assert replaced and stored.id == "d1" and stored.meta == {"n": 2} and stored.params == {"last": True}
    assert stored.run_at == pytest.approx(first.created_at + 1.5, abs=0.05), "never past first + max_wait"
    assert stored.seq == 1, "it keeps its place in acceptance order"
    assert await store.get("d2") is None
    assert (await store.get("d1")) == stored


async def test_concurrent_debounce_submissions_make_one_job(store: Store) -> None:
    jobs = [debounced(f"c{n}", n + 1, "burst", delay=5, meta={"n": n}) for n in range(50)]
    answers = await asyncio.gather(*(store.debounce(job, replacing(job)) for job in jobs))
    assert len({job.id for job, _ in answers}) == 1
    assert sum(1 for _, replaced in answers if not replaced) == 1
    waiting = [p for p in await store.pending() if p.id.startswith("c")]
    assert len(waiting) == 1


async def test_once_its_job_started_a_debounce_key_opens_a_new_window(store: Store) -> None:
    first = debounced("s1", 1, "k", delay=0)
    await store.debounce(first, replacing(first))
    first.begin_attempt(0, "node")
    await store.save(first)
    second = debounced("s2", 2, "k", delay=1)
    assert await store.debounce(second, replacing(second)) == (second, False)
    third = debounced("s3", 3, "k", delay=1)
    assert await store.debounce(third, lambda waiting: None) == (third, False), "replace said: it started"
    assert (await store.get("s2")).status is Status.SCHEDULED  # type: ignore[union-attr]

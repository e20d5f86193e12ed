"""What a job costs the SQLite store: its insert and its outcome; the `running` mark only when the attempt lasts."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from poulpe.job import Job, Method, Status
from poulpe.store import sqlite_writer as sqlite
from poulpe.store.sqlite import EARLY_HAND_OVER, EARLY_HAND_OVER_ROWS, SqliteStore
from poulpe.store.sqlite_rows import SORTED_ROWS


def make(job_id: str, seq: int) -> Job:
    return Job(id=job_id, seq=seq, method=Method.GET, name="http://127.0.0.1/x", status=Status.QUEUED, run_at=1.0)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "jobs.db")
    await opened.open()
    yield opened
    await opened.close()


def rows_written(store: SqliteStore) -> int:
    assert store._writer is not None
    return store._writer.rows


async def test_a_short_attempt_costs_two_row_writes_its_outcome_replaces_the_running_mark(store: SqliteStore) -> None:
    jobs = [job for job, _ in await store.add([make(f"short-{n}", n) for n in range(10)])]
    for job in jobs:
        job.begin_attempt(0)
        store.save_soon(job)
    for job in jobs:
        job.end_attempt(True, None, time.time())
        job.status, job.finished_at = Status.SUCCEEDED, time.time()
    await asyncio.gather(*(store.save(job) for job in jobs))
    await asyncio.sleep(sqlite.SOON_DELAY + 0.2)  # nothing is left to write once the delay has passed
    assert rows_written(store) == 20
    assert {p.status for p in await store.pending()} == set()
    assert await store.day_counts(time.strftime("%Y-%m-%d", time.gmtime())) == {"succeeded": 10, "failed": 0}


async def test_the_running_mark_of_a_longer_attempt_is_stored_for_recovery(store: SqliteStore) -> None:
    [(job, _)] = await store.add([make("long", 1)])
    job.begin_attempt(0)
    store.save_soon(job)
    await asyncio.sleep(sqlite.SOON_DELAY + 0.3)
    assert [p.status for p in await store.pending()] == [Status.RUNNING]
    stored = await store.get("long")
    assert stored is not None and stored.attempts == 1


async def test_a_mark_whose_job_moved_on_is_not_written_over_the_newer_state(store: SqliteStore) -> None:
    [(job, _)] = await store.add([make("moved", 1)])
    job.begin_attempt(0)
    store.save_soon(job)
    job.end_attempt(False, "boom", time.time())
    job.status, job.finished_at = Status.DEAD, time.time()  # decided, its dead letter not yet written: not saved
    await asyncio.sleep(sqlite.SOON_DELAY + 0.3)
    stored = await store.get("moved")
    assert stored is not None and stored.status is Status.QUEUED  # the store never shows it dead before its letter
    assert await store.day_counts(time.strftime("%Y-%m-%d", time.gmtime())) == {"succeeded": 0, "failed": 0}
    await store.close()  # closing writes what waits: still nothing for this job
    await store.open()
    stored = await store.get("moved")
    assert stored is not None and stored.status is Status.QUEUED


async def test_an_attempt_that_begins_just_before_an_earlier_mark_is_written_still_gets_its_whole_delay(
    store: SqliteStore,
) -> None:
    jobs = [job for job, _ in await store.add([make("long-one", 1), make("short-one", 2)])]
    long, short = jobs
    long.begin_attempt(0)
    store.save_soon(long)
    await asyncio.sleep(sqlite.SOON_DELAY * 0.8)
    short.begin_attempt(1)  # begins shortly before the long attempt's mark is due
    store.save_soon(short)
    await asyncio.sleep(sqlite.SOON_DELAY * 0.2 + 0.05)  # the long attempt's mark is written now, not this one's
    short.end_attempt(True, None, time.time())
    short.status, short.finished_at = Status.SUCCEEDED, time.time()
    await store.save(short)  # within its own delay: the outcome replaces its mark
    await asyncio.sleep(sqlite.SOON_DELAY + 0.2)
    assert rows_written(store) == 2 + 1 + 1  # two inserts, the long attempt's mark, the short one's outcome
    assert [p.status for p in await store.pending()] == [Status.RUNNING]


async def test_outcomes_saved_together_share_one_answer_and_one_commit(store: SqliteStore) -> None:
    jobs = [job for job, _ in await store.add([make(f"together-{n}", n) for n in range(50)])]
    assert store._writer is not None
    batches = store._writer.batches
    for job in jobs:
        job.begin_attempt(0)
        job.end_attempt(True, None, time.time())
        job.status, job.finished_at = Status.SUCCEEDED, time.time()
    assert await store.save_many(jobs) == [None] * 50
    assert store._writer.batches == batches + 1
    assert rows_written(store) == 100
    stored = await store.get_many([job.id for job in jobs])
    assert {job.status for job in stored} == {Status.SUCCEEDED}


async def test_the_writer_keeps_the_id_index_in_its_cache_and_checkpoints_seldom(store: SqliteStore) -> None:
    """Random UUID4 ids land on any page of the id index: the writer's page cache holds it (64 MiB), and the WAL is
    copied back to the database file every 10,000 pages rather than SQLite's 1,000."""
    await store.add([make(f"cache-{n}", n) for n in range(10)])
    assert store._writer is not None
    conn = store._writer.conn
    assert conn.execute("PRAGMA cache_size").fetchone()[0] == -64 * 1024
    assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 10_000
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL: a commit is on disk before its answer


def ended(jobs: list[Job]) -> list[Job]:
    for job in jobs:
        job.begin_attempt(0)
        job.end_attempt(True, None, time.time())
        job.status, job.finished_at = Status.SUCCEEDED, time.time()
    return jobs


async def outcomes_flowing(store: SqliteStore, jobs: list[Job]) -> tuple[asyncio.Future[object], int]:
    """Outcomes handed over while the writer is busy with a commit, as under a steady flow of attempts: their save,
    and the writer's commits so far, once it has finished the busy one."""
    assert store._writer is not None
    release = threading.Event()
    busy = asyncio.ensure_future(store._write(lambda conn: release.wait(10)))
    await asyncio.sleep(0.05)  # the writer is inside that commit
    saving: asyncio.Future[object] = asyncio.ensure_future(store.save_many(jobs))
    await asyncio.sleep(0.05)  # handed over, waiting
    batches = store._writer.batches
    release.set()
    await busy
    await asyncio.sleep(0.1)  # the writer has taken them, and waits for more
    return saving, batches


async def test_while_outcomes_flow_the_writer_waits_briefly_to_commit_more_of_them_at_once(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite, "LINGER", 1.0)  # far longer than poulpe's, so that the test's steps fit in it
    jobs = ended([job for job, _ in await store.add([make(f"flow-{n}", n) for n in range(20)])])
    first, batches = await outcomes_flowing(store, jobs[:10])
    assert not first.done()  # not committed yet: the writer waits for more outcomes
    second = await store.save_many(jobs[10:])  # they come within the wait: one commit for both
    assert second == [None] * 10 and await first == [None] * 10
    assert store._writer is not None and store._writer.batches == batches + 1
    stored = await store.get_many([job.id for job in jobs])
    assert {job.status for job in stored} == {Status.SUCCEEDED}


async def test_an_insert_never_waits_for_more_outcomes(store: SqliteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite, "LINGER", 5.0)
    jobs = ended([job for job, _ in await store.add([make(f"flow-{n}", n) for n in range(10)])])
    waiting, _ = await outcomes_flowing(store, jobs)
    start = time.monotonic()
    [(_, duplicate)] = await store.add([make("new", 99)])  # its intake answers once it is committed: at once
    assert time.monotonic() - start < 2.0 and not duplicate
    assert await waiting == [None] * 10  # the outcomes went in the same commit
    assert await store.get("new") is not None


async def test_closing_the_store_ends_the_wait_and_writes_what_waits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite, "LINGER", 5.0)
    store = SqliteStore(tmp_path / "jobs.db")
    await store.open()
    jobs = ended([job for job, _ in await store.add([make(f"close-{n}", n) for n in range(10)])])
    waiting, _ = await outcomes_flowing(store, jobs)
    start = time.monotonic()
    await store.close()
    assert time.monotonic() - start < 2.0
    assert await waiting == [None] * 10
    reopened = SqliteStore(tmp_path / "jobs.db")
    await reopened.open()
    assert {job.status for job in await reopened.get_many([job.id for job in jobs])} == {Status.SUCCEEDED}
    await reopened.close()


async def test_outcomes_on_an_idle_store_are_committed_at_once(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite, "LINGER", 5.0)
    jobs = ended([job for job, _ in await store.add([make(f"idle-{n}", n) for n in range(3)])])
    start = time.monotonic()
    assert await store.save_many(jobs) == [None] * 3  # nothing was flowing: no wait
    assert time.monotonic() - start < 2.0


async def test_only_batches_of_outcomes_wait() -> None:
    [job] = ended([make("kinds", 1)])
    answered: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    assert sqlite.lingers([(sqlite.Updates([job]), answered), (sqlite.Update(job), None)])
    assert not sqlite.lingers([(sqlite.Updates([job]), answered), (sqlite.Update(job), answered)])  # a save waits
    assert not sqlite.lingers([(sqlite.Insert([make("new", 2)]), answered)])


async def test_batches_committed_together_are_inserted_in_id_order_each_keeping_its_own_order(
    store: SqliteStore,
) -> None:
    """Concurrent batches whose ids ascend (generated ones: validate.BatchIds) are inserted sorted by id, one
    commit; a batch whose given ids do not ascend is stored in its own order, so the listing (newest first, by
    the row order) shows it as accepted."""
    size = SORTED_ROWS
    ascending = [make(f"b-{n:04}", n) for n in range(size)]
    given = [make(f"a-{n:04}", size + n) for n in reversed(range(size))]  # ids descend in acceptance order
    later = [make(f"c-{n:04}", 2 * size + n) for n in range(size)]
    await asyncio.gather(store.add(ascending), store.add(given), store.add(later))
    listed = [job.id for job in (await store.list_jobs(size=3 * size)).jobs]
    assert listed[size : 2 * size] == [job.id for job in reversed(given)]
    assert listed[:size] == [job.id for job in reversed(later)]


async def test_concurrent_batches_in_id_order_are_inserted_merged_by_id(store: SqliteStore) -> None:
    """Their rows reach the id index in key order; each batch's own order is kept (its ids ascend)."""
    size = SORTED_ROWS
    evens = [make(f"k-{2 * n:05}", n) for n in range(size)]
    odds = [make(f"k-{2 * n + 1:05}", size + n) for n in range(size)]
    await asyncio.gather(store.add(evens), store.add(odds))
    listed = [job.id for job in (await store.list_jobs(size=2 * size)).jobs]
    assert listed == sorted(listed, reverse=True) and len(listed) == 2 * size


async def until_idle(store: SqliteStore) -> None:
    """The writer has settled what it last committed and waits for more (it sets `idle` just before it waits)."""
    assert store._writer is not None
    for _ in range(500):
        if store._writer.idle:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the writer never went idle")


async def test_a_burst_of_requests_reaches_the_idle_writer_before_the_loop_has_issued_all_of_it(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sixty requests read together each insert a job in one loop iteration: the idle writer gets the first ones
    (EARLY_HAND_OVER) at once and commits them while the loop issues the rest, which go in a later commit. Each
    answer still comes after its own commit, and the jobs keep their acceptance order."""
    monkeypatch.setattr(sqlite, "TAKE_WAIT", 10.0)  # a loaded machine may be slow to wake the writer
    await until_idle(store)
    assert store._writer is not None
    batches = store._writer.batches
    jobs = [make(f"burst-{n:02}", n) for n in range(60)]
    answers = await asyncio.gather(*(store.add([job]) for job in jobs))
    assert [(stored.id, duplicate) for [(stored, duplicate)] in answers] == [(job.id, False) for job in jobs]
    assert store._writer.batches - batches in (2, 3)  # not one commit for the whole burst
    listed = [job.id for job in (await store.list_jobs(size=60)).jobs]
    assert listed == [job.id for job in reversed(jobs)]


async def test_a_few_requests_writes_of_one_iteration_still_share_one_commit(store: SqliteStore) -> None:
    await until_idle(store)
    assert store._writer is not None
    batches = store._writer.batches
    few = [make(f"few-{n}", n) for n in range(EARLY_HAND_OVER - 1)]
    await asyncio.gather(*(store.add([job]) for job in few))
    assert store._writer.batches == batches + 1


async def test_batches_of_jobs_read_together_reach_the_idle_writer_before_the_loop_has_issued_them_all(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four requests of a batch each arrive together: a batch is one write, far fewer than EARLY_HAND_OVER, but
    its rows are enough work for a commit. The idle writer gets the first batch at once and commits it while the loop
    issues the others, which go in a later commit; each answer after its commit, each batch in its own order."""
    monkeypatch.setattr(sqlite, "TAKE_WAIT", 10.0)  # a loaded machine may be slow to wake the writer
    await until_idle(store)
    assert store._writer is not None
    batches = store._writer.batches
    size = EARLY_HAND_OVER_ROWS
    requests = [[make(f"batch-{b}-{n:04}", b * size + n) for n in range(size)] for b in range(4)]
    answers = await asyncio.gather(*(store.add(jobs) for jobs in requests))
    for jobs, answer in zip(requests, answers, strict=True):
        assert [(stored.id, duplicate) for stored, duplicate in answer] == [(job.id, False) for job in jobs]
    assert store._writer.batches - batches in (2, 3)  # not one commit for all four
    assert store._writer.rows >= 4 * size


async def test_small_batches_of_one_iteration_still_share_one_commit(store: SqliteStore) -> None:
    await until_idle(store)
    assert store._writer is not None
    batches = store._writer.batches
    size = EARLY_HAND_OVER_ROWS // 4 - 1
    requests = [[make(f"small-{b}-{n:04}", b * size + n) for n in range(size)] for b in range(4)]
    await asyncio.gather(*(store.add(jobs) for jobs in requests))
    assert store._writer.batches == batches + 1

"""The storage contract, run against every backend: SQLite, and Redis on a real redis-server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from poulpe.batch_record import Batch
from poulpe.job import CallbackDelivery, Job, Method, Status, decode_job, encode_job
from poulpe.store.base import Store
from poulpe.store.redis import RedisStore
from poulpe.store.redis_partitions import PartitionedStore
from poulpe.store.sqlite import SqliteStore
from tests.redis_server import RedisServer

StoreFactory = Callable[[pytest.FixtureRequest, Path], Store]


def sqlite_store(request: pytest.FixtureRequest, tmp: Path) -> Store:
    return SqliteStore(tmp / "jobs.db")


def redis_store(request: pytest.FixtureRequest, tmp: Path) -> Store:
    server: RedisServer = request.getfixturevalue("redis_server")
    return RedisStore(server.url, prefix=request.getfixturevalue("redis_prefix"), owner="contract")


def partitioned_store(request: pytest.FixtureRequest, tmp: Path) -> Store:
    """--partitions 3: the same contract over three namespaces."""
    server: RedisServer = request.getfixturevalue("redis_server")
    prefix = request.getfixturevalue("redis_prefix")
    return PartitionedStore(server.url, partitions=3, prefix=prefix, owner="contract")


BACKENDS: dict[str, StoreFactory] = {"sqlite": sqlite_store, "redis": redis_store, "partitions": partitioned_store}


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


async def test_outcomes_of_several_days_saved_together_count_in_each_day(store: Store) -> None:
    jobs = [job for job, _ in await store.add([make(f"d{n}", n) for n in range(7)])]
    for n, job in enumerate(jobs):  # days 1970-01-02 and 1970-01-03, successes and deaths mixed
        job.status = Status.SUCCEEDED if n % 3 else Status.DEAD
        job.finished_at = 86400.0 * (1 + n % 2) + n
    assert await store.save_many(jobs) == [None] * 7
    assert await store.day_counts("1970-01-02") == {"succeeded": 2, "failed": 2}
    assert await store.day_counts("1970-01-03") == {"succeeded": 2, "failed": 1}


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


async def test_a_tenants_jobs_are_listed_and_counted_by_their_id_prefix(store: Store) -> None:
    """docs/tenants.md: a tenant's ids are `<tenant>:<id>`; its listings and counts are asked by that prefix."""
    await store.add([make("pay:1", 1), make("pay:2", 2, run_at=time.time() + 60, status=Status.SCHEDULED)])
    await store.add([make("pa:1", 3), make("pay;", 4), make("payx:1", 5), make("shop:pay:1", 6)])
    page = await store.list_jobs(id_prefix="pay:")
    assert page.total == 2 and [j.id for j in page.jobs] == ["pay:2", "pay:1"]
    assert [j.id for j in (await store.list_jobs(id_prefix="pay:", status=Status.QUEUED)).jobs] == ["pay:1"]
    counted = await store.prefix_counts("pay:", [Status.QUEUED, Status.SCHEDULED, Status.DEAD])
    assert counted == {"queued": 1, "scheduled": 1, "dead": 0}
    assert (await store.prefix_counts("nobody:", [Status.QUEUED])) == {"queued": 0}


async def test_ids_of_a_status_come_newest_first_without_the_records(store: Store) -> None:
    await store.add([make(f"d{n}", n, meta={"big": "x" * 10_000}) for n in range(1, 6)])
    for n in (1, 2, 4, 5):
        [job] = await store.get_many([f"d{n}"])
        job.status, job.finished_at = Status.DEAD, time.time()
        await store.save(job)
    assert await store.ids(Status.DEAD, 10) == ["d5", "d4", "d2", "d1"]
    assert await store.ids(Status.DEAD, 2) == ["d5", "d4"]
    assert await store.ids(Status.QUEUED, 10) == ["d3"]
    assert await store.ids(Status.SUCCEEDED, 10) == []
    assert await store.ids(Status.DEAD, 0) == []


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


# --- QUEUE leases ---------------------------------------------------------------------------------------------
def task(job_id: str, seq: int, kind: str = "resize", *, run_at: float = 100.0, status: Status = Status.QUEUED) -> Job:
    return Job(id=job_id, method=Method.QUEUE, name=kind, seq=seq, run_at=run_at, status=status, created_at=1.0)


async def test_a_lease_takes_due_jobs_of_its_type_in_due_order(store: Store) -> None:
    await store.add(
        [
            task("b", 2, run_at=100.0),
            task("a", 1, run_at=100.0),
            task("early", 3, run_at=50.0, status=Status.RETRYING),
            task("later", 4, run_at=500.0, status=Status.SCHEDULED),
            task("other", 5, "thumbs"),
        ]
    )
    taken = await store.lease_queue("resize", 10, "w1", 160.0, 100.0)
    assert [job.id for job in taken] == ["early", "a", "b"]
    assert all(j.status is Status.RUNNING and j.lease_holder == "w1" and j.lease_until == 160.0 for j in taken)
    stored = await store.get("a")
    assert stored is not None and stored.status is Status.RUNNING and stored.attempts == 1
    assert stored.history[-1].node == "w1" and stored.history[-1].started_at == 100.0
    assert await store.lease_queue("resize", 10, "w2", 160.0, 100.0) == []
    assert [job.id for job in await store.lease_queue("resize", 10, "w2", 900.0, 600.0)] == ["later"]


async def test_concurrent_leases_never_hand_a_job_out_twice(store: Store) -> None:
    await store.add([task(f"t{n}", n) for n in range(1, 41)])
    batches = await asyncio.gather(*(store.lease_queue("resize", 3, f"w{n}", 200.0, 100.0) for n in range(20)))
    ids = [job.id for batch in batches for job in batch]
    assert len(ids) == len(set(ids)) == 40


async def test_only_the_holder_of_the_current_attempt_may_save(store: Store) -> None:
    await store.add([task("a", 1)])
    [job] = await store.lease_queue("resize", 1, "w1", 160.0, 100.0)
    job.status, job.finished_at, job.lease_holder = Status.SUCCEEDED, 120.0, None
    assert await store.save_if_held(job, "w2") is False
    stale = msgspec_copy(job)
    stale.attempts = 7
    assert await store.save_if_held(stale, "w1") is False
    assert (await store.get("a")).status is Status.RUNNING  # type: ignore[union-attr]
    assert await store.save_if_held(job, "w1") is True
    assert (await store.get("a")).status is Status.SUCCEEDED  # type: ignore[union-attr]
    assert await store.save_if_held(job, "w1") is False  # once final, nobody holds it
    assert (await store.day_counts("1970-01-01"))["succeeded"] == 1


async def test_expired_leases_are_found_earliest_first(store: Store) -> None:
    await store.add([task("a", 1), task("b", 2), task("c", 3)])
    await store.lease_queue("resize", 1, "w1", 300.0, 100.0)
    await store.lease_queue("resize", 1, "w2", 200.0, 100.0)
    await store.lease_queue("resize", 1, "w3", 900.0, 100.0)
    assert await store.next_lease_end() == 200.0
    assert [job.id for job in await store.expired_leases(350.0, 10)] == ["b", "a"]
    assert [job.id for job in await store.expired_leases(350.0, 1)] == ["b"]
    assert await store.expired_leases(150.0, 10) == []


async def test_a_callback_delivery_changes_nothing_else(store: Store) -> None:
    await store.add([make("a", 1)])
    job = await store.get("a")
    assert job is not None
    assert await store.set_callback_delivery("a", CallbackDelivery(attempts=1)) is False  # not final yet
    job.status, job.finished_at = Status.SUCCEEDED, 100.0
    await store.save(job)
    assert await store.set_callback_delivery("a", CallbackDelivery(attempts=2, status_code=200)) is True
    stored = await store.get("a")
    assert stored is not None and stored.status is Status.SUCCEEDED
    assert stored.callback_delivery == CallbackDelivery(attempts=2, status_code=200)
    assert (await store.day_counts("1970-01-01"))["succeeded"] == 1
    assert await store.set_callback_delivery("missing", CallbackDelivery()) is False


def msgspec_copy(job: Job) -> Job:
    return decode_job(encode_job(job))


async def test_next_due_is_the_earliest_waiting_job_of_a_type(store: Store) -> None:
    assert await store.next_due("resize") is None
    await store.add(
        [
            task("later", 1, run_at=300.0, status=Status.SCHEDULED),
            task("soon", 2, run_at=200.0, status=Status.RETRYING),
            task("other", 3, "thumbs", run_at=50.0),
        ]
    )
    assert await store.next_due("resize") == 200.0
    await store.lease_queue("resize", 1, "w1", 999.0, 250.0)  # takes "soon": no longer waiting
    assert await store.next_due("resize") == 300.0


async def test_utf8_task_types_are_queues_of_their_own(store: Store) -> None:
    """easyTask's types may be Chinese (`下载`) or accented: each is its own queue (`q:下载` in Redis)."""
    await store.add(
        [
            task("zh", 1, "下载"),
            task("zh2", 2, "下载2"),
            task("fr", 3, "tâche", run_at=300.0, status=Status.SCHEDULED),
        ]
    )
    assert await store.next_due("tâche") == 300.0
    [job] = await store.lease_queue("下载", 10, "工兵1", 160.0, 100.0)
    assert (job.id, job.lease_holder) == ("zh", "工兵1")
    assert [j.id for j in await store.expired_leases(200.0, 10)] == ["zh"]
    assert [j.id for j in (await store.list_jobs(method="QUEUE", name="下载2")).jobs] == ["zh2"]
    assert [j.id for j in await store.lease_queue("下载2", 10, "工兵1", 160.0, 100.0)] == ["zh2"]


async def test_a_final_job_and_its_children_are_written_together_and_once(store: Store) -> None:
    await store.add([make("p", 1, then=[{"method": "GET", "name": "http://127.0.0.1/y"}])])
    parent = await store.get("p")
    assert parent is not None
    parent.status, parent.finished_at, parent.children = Status.SUCCEEDED, 5.0, ["p.then.0"]
    child = make("p.then.0", 2, parent="p")
    assert await store.save_final(parent, [child]) == [(child, False)]
    again = await store.save_final(parent, [make("p.then.0", 3, parent="p")])  # the same write sent twice
    assert again[0][1] is True and again[0][0].seq == 2
    assert (await store.get("p")).children == ["p.then.0"]  # type: ignore[union-attr]
    assert [job.id for job in await store.pending()] == ["p.then.0"]
    counts = await store.counts()
    assert (counts["succeeded"], counts["queued"]) == (1, 1)


async def test_a_report_refused_to_a_worker_that_lost_its_lease_writes_no_child(store: Store) -> None:
    await store.add([task("a", 1)])
    [job] = await store.lease_queue("resize", 1, "w1", 160.0, 100.0)
    job.status, job.finished_at, job.lease_holder = Status.SUCCEEDED, 120.0, None
    assert await store.save_if_held(job, "w2", [make("a.then.0", 5)]) is False
    assert await store.get("a.then.0") is None
    assert await store.save_if_held(job, "w1", [make("a.then.0", 5)]) is True
    assert (await store.get("a.then.0")).status is Status.QUEUED  # type: ignore[union-attr]


async def test_a_batch_is_stored_with_its_jobs_and_ends_once(store: Store) -> None:
    jobs = [make(f"b{n}", n + 1, batch="B") for n in range(3)]
    batch = Batch(id="B", total=3, pending=3, created_at=1.0, callback="http://127.0.0.1/", labels={"team": "pay"})
    assert await store.add_batch(batch, jobs) is None
    known = await store.add_batch(batch, [make("other", 9, batch="B")])
    assert isinstance(known, Batch) and known.total == 3 and await store.get("other") is None
    taken = await store.add_batch(Batch(id="C", total=2, pending=2, created_at=1.0), [make("c0", 10), make("b0", 11)])
    assert taken == "b0" and await store.get_batch("C") is None and await store.get("c0") is None  # all or nothing

    for n, status in enumerate((Status.SUCCEEDED, Status.DEAD)):
        job = await store.get(f"b{n}")
        assert job is not None
        job.status, job.finished_at = status, 5.0 + n
        await store.save(job)
        await store.save(job)  # written twice: counted once
    half = await store.get_batch("B")
    assert half is not None and (half.pending, half.succeeded, half.dead, half.finished_at) == (1, 1, 1, None)
    assert await store.owed_batches(10.0, 30.0) == []

    last = await store.get("b2")
    assert last is not None
    last.status, last.finished_at = Status.CANCELLED, 7.0
    await store.save_final(last, [])
    done = await store.get_batch("B")
    assert done is not None and (done.pending, done.cancelled, done.finished_at) == (0, 1, 7.0)
    assert (done.callback, done.labels) == ("http://127.0.0.1/", {"team": "pay"})
    assert await store.owed_batches(10.0, 30.0) == ["B"]
    assert await store.owed_batches(10.0, 30.0) == []  # held by the first caller ...
    assert await store.owed_batches(50.0, 30.0) == ["B"]  # ... until its hold runs out
    await store.batch_announced("B")
    assert await store.owed_batches(100.0, 30.0) == []

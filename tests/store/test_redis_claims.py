"""Claims and leases on a real Redis: what lets several poulpe processes share one workload safely."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest

from poulpe.errors import NotHeld
from poulpe.job import Job, Method, Status
from poulpe.store.redis import RedisStore
from poulpe.store.redis_link import namespace
from tests.redis_server import RedisServer

Opener = Callable[[str], "asyncio.Future[RedisStore]"]


@pytest.fixture
async def stores(redis_server: RedisServer, redis_prefix: str) -> AsyncIterator[Callable[[str], RedisStore]]:
    """Stores of several 'processes' (owners) on the same namespace."""
    opened: list[RedisStore] = []

    def make(owner: str) -> RedisStore:
        store = RedisStore(redis_server.url, prefix=redis_prefix, owner=owner)
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.close()


def job(n: int, *, run_at: float = 0.0) -> Job:
    return Job(id=f"j{n}", method=Method.GET, name="http://127.0.0.1/x", seq=n, run_at=run_at, created_at=1.0)


def test_every_key_of_a_namespace_shares_one_hash_tag() -> None:
    assert namespace("poulpe:") == "{poulpe}:"
    assert namespace("shop:{eu}:") == "shop:{eu}:"


async def test_two_processes_never_claim_the_same_job(stores: Callable[[str], RedisStore]) -> None:
    a, b = stores("a"), stores("b")
    await a.open()
    await b.open()
    await a.add([job(n) for n in range(100)])
    got_a, got_b = await asyncio.gather(a.claim(60, lease=30), b.claim(60, lease=30))
    ids_a, ids_b = {j.id for j in got_a.jobs}, {j.id for j in got_b.jobs}
    assert not ids_a & ids_b
    assert len(ids_a | ids_b) == 100
    assert (await a.claim(10, lease=30)).jobs == []


async def test_a_claim_is_in_due_order_and_reports_the_next_due_time(stores: Callable[[str], RedisStore]) -> None:
    a = stores("a")
    await a.open()
    now = time.time()
    await a.add([job(1, run_at=now - 1), job(2, run_at=now - 2), job(3, run_at=now + 60)])
    claimed = await a.claim(10, lease=30)
    assert [j.id for j in claimed.jobs] == ["j2", "j1"]
    assert claimed.next_due == pytest.approx(now + 60)


async def test_a_lease_that_runs_out_gives_the_job_to_another_process(stores: Callable[[str], RedisStore]) -> None:
    a, b = stores("a"), stores("b")
    await a.open()
    await b.open()
    await a.add([job(1), job(2)])
    [first, second] = (await a.claim(2, lease=0.3)).jobs
    first.begin_attempt(0)
    await a.save(first)  # running on a when a dies
    await asyncio.sleep(0.2)
    assert await a.renew([second.id], lease=0.3) == []  # a renews only the second
    await asyncio.sleep(0.2)
    taken = (await b.claim(10, lease=30)).jobs
    assert [j.id for j in taken] == [first.id]
    assert taken[0].status is Status.RUNNING  # the new holder closes the lost attempt before running it again
    with pytest.raises(NotHeld):
        await a.save(first)  # a's late outcome is refused: b holds the job now
    assert await a.renew([first.id, second.id], lease=30) == [first.id]


async def test_a_final_save_is_announced_and_releases_the_lease(
    stores: Callable[[str], RedisStore],
) -> None:
    a, b = stores("a"), stores("b")
    await a.open()
    await b.open()
    heard: list[tuple[str, str]] = []
    connected = asyncio.Event()
    listening = asyncio.create_task(b.listen(lambda c, p: heard.append((c, p)), connected.set))
    try:
        await asyncio.wait_for(connected.wait(), 5)
        await a.add([job(1)])
        [claimed] = (await a.claim(1, lease=30)).jobs
        claimed.status, claimed.finished_at = Status.SUCCEEDED, time.time()
        await a.save(claimed)
        for _ in range(100):
            if ("done", "j1") in heard:
                break
            await asyncio.sleep(0.01)
        assert ("work", "") in heard and ("done", "j1") in heard
        assert (await b.counts())["succeeded"] == 1
    finally:
        listening.cancel()


async def test_writes_go_on_after_redis_forgets_its_scripts(
    stores: Callable[[str], RedisStore], redis_server: RedisServer
) -> None:
    a = stores("a")
    await a.open()
    redis_server.client().script_flush()
    assert await a.add([job(1)]) == [(job(1), False)]
    assert (await a.get("j1")) is not None


async def test_jobs_of_a_claim_whose_answer_was_lost_come_back_on_the_next_claim(
    stores: Callable[[str], RedisStore],
) -> None:
    a = stores("a")
    await a.open()
    await a.add([job(1), job(2), job(3)])
    kept = (await a.claim(1, lease=60)).jobs  # this process holds j1
    await a.claim(10, lease=60)  # as if Redis had restarted before this answer came back: j2 and j3 are unknown here
    again = await a.claim(10, lease=60, recheck=[j.id for j in kept])
    assert sorted(j.id for j in again.jobs) == ["j2", "j3"]
    assert await a.renew(["j1", "j2", "j3"], lease=60) == []

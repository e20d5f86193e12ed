"""The dispatch rule in Redis's claim script: keys' limits counted across every process sharing one namespace."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from poulpe.job import Job, Method, Status
from poulpe.keys import KeyLimits
from poulpe.store.redis import RedisStore
from tests.redis_server import RedisServer

Open = Callable[[str], Awaitable[RedisStore]]


@pytest.fixture
async def stores(redis_server: RedisServer, redis_prefix: str) -> AsyncIterator[Open]:
    """Open stores of several 'processes' (owners) on one namespace."""
    opened: list[RedisStore] = []

    async def make(owner: str) -> RedisStore:
        store = RedisStore(redis_server.url, prefix=redis_prefix, owner=owner)
        await store.open()
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.close()


def job(job_id: str, seq: int, *, key: str | None = None, priority: int = 0) -> Job:
    return Job(
        id=job_id, method=Method.GET, name="http://127.0.0.1/x", seq=seq, key=key, priority=priority, created_at=1.0
    )


async def test_parallelism_is_counted_across_processes_and_freed_when_a_job_ends(stores: Open) -> None:
    a, b = await stores("a"), await stores("b")
    await a.set_key("pair", KeyLimits(parallelism=2))
    await a.add([job(f"p{n}", n, key="pair") for n in range(5)])
    first = await a.claim(10, lease=30)
    second = await b.claim(10, lease=30)
    assert len(first.jobs) == 2 and second.jobs == [] and second.held == {"pair": "parallelism"}
    done = first.jobs[0]
    done.status, done.finished_at = Status.SUCCEEDED, time.time()
    await a.save(done)
    assert [j.id for j in (await b.claim(10, lease=30)).jobs] == ["p2"]
    assert await a.key_counts("pair", 1.0) == (2, 2, 3)


async def test_the_highest_priority_is_claimed_first_and_keys_take_turns(stores: Open) -> None:
    a = await stores("a")
    await a.add([job(f"a{n}", n, key="A") for n in range(50)])
    await a.add([job("b0", 100, key="B"), job("b1", 101, key="B"), job("top", 102, key="C", priority=10)])
    got = [j.id for j in (await a.claim(5, lease=30)).jobs]
    assert got[0] == "top"
    assert got[1:] == ["a0", "b0", "a1", "b1"]


async def test_a_rate_is_one_token_bucket_for_every_process(stores: Open) -> None:
    a, b = await stores("a"), await stores("b")
    await a.set_key("api", KeyLimits(rate=5, period=1.0))
    await a.add([job(f"r{n}", n, key="api") for n in range(10)])
    now = time.time()
    assert len((await a.claim(10, lease=30, now=now)).jobs) == 1  # a new bucket holds one token
    held = await b.claim(10, lease=30, now=now + 0.1)
    assert held.jobs == [] and held.held == {"api": "rate"}
    assert held.next_token == pytest.approx(now + 0.2)
    assert len((await b.claim(10, lease=30, now=now + 0.2)).jobs) == 1


async def test_paused_keys_and_the_global_pause_claim_nothing(stores: Open) -> None:
    a = await stores("a")
    await a.set_key("quiet", KeyLimits(paused=True))
    await a.add([job("q", 1, key="quiet"), job("n", 2)])
    assert [j.id for j in (await a.claim(10, lease=30)).jobs] == ["n"]
    await a.set_paused(True)
    await a.add([job("m", 3)])
    assert (await a.claim(10, lease=30)).jobs == []
    assert (await a.controls())[1] is True
    await a.set_paused(False)
    await a.set_key("quiet", None)
    assert sorted(j.id for j in (await a.claim(10, lease=30)).jobs) == ["m", "q"]


async def test_a_cancelled_due_job_leaves_its_keys_ready_set(stores: Open) -> None:
    a = await stores("a")
    await a.set_key("one", KeyLimits(parallelism=1))
    await a.add([job("x", 1, key="one"), job("y", 2, key="one")])
    [x] = (await a.claim(10, lease=30)).jobs  # y is due, waiting in its key's ready set
    y = await a.get("y")
    assert y is not None
    y.status, y.finished_at = Status.CANCELLED, time.time()
    await a.save(y)
    x.status, x.finished_at = Status.SUCCEEDED, time.time()
    await a.save(x)
    assert (await a.claim(10, lease=30)).jobs == []
    assert await a.key_counts("one", 1.0) == (0, 0, 1)

"""What the Redis store tells its callers when Redis goes away in the middle of a write, or of a job's attempt."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from poulpe.errors import OutcomeUnknown, StoreUnavailable
from poulpe.job import Job, Method, Status
from poulpe.store.redis import RedisStore
from poulpe.store.redis_scripts import ADD
from tests.redis_proxy import RedisProxy
from tests.redis_server import RedisServer

ADD_SHA = hashlib.sha1(ADD.encode()).hexdigest().encode()


@pytest.fixture
def proxy(redis_server: RedisServer) -> Iterator[RedisProxy]:
    proxy = RedisProxy(redis_server.port).start()
    yield proxy
    proxy.stop()


@pytest.fixture
async def stores(redis_prefix: str) -> AsyncIterator[Callable[..., RedisStore]]:
    opened: list[RedisStore] = []

    def make(url: str, owner: str = "a", patience: float = 5.0) -> RedisStore:
        store = RedisStore(url, prefix=redis_prefix, owner=owner, patience=patience)
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.close()


def job(n: int, *, seq: int | None = None) -> Job:
    return Job(id=f"j{n}", method=Method.GET, name="http://127.0.0.1/x", seq=seq or n, created_at=1.0)


async def test_an_add_whose_reply_was_lost_is_found_stored_by_this_submission_not_a_duplicate(
    stores: Callable[..., RedisStore], proxy: RedisProxy, redis_server: RedisServer
) -> None:
    store = stores(proxy.url)
    await store.open()
    proxy.lose_reply(to=ADD_SHA)  # Redis stores the job, its answer never comes back
    assert await store.add([job(1), job(2)]) == [(job(1), False), (job(2), False)]
    assert proxy.lost == 1
    assert (await store.get("j1")) is not None
    # a submission of the same id later is a duplicate, as always
    [(_, duplicate)] = await store.add([job(1, seq=100)])
    assert duplicate


async def test_a_lost_reply_is_sent_again_once_redis_answers_within_the_patience(
    stores: Callable[..., RedisStore], proxy: RedisProxy
) -> None:
    store = stores(proxy.url, patience=10.0)
    await store.open()
    proxy.lose_reply(to=ADD_SHA, then_refuse=True)  # the answer is lost, and Redis is away for a while
    asyncio.get_running_loop().call_later(0.8, proxy.accept)
    started = time.monotonic()
    assert await store.add([job(1)]) == [(job(1), False)]
    assert 0.7 < time.monotonic() - started < 5


async def test_a_lost_reply_while_redis_stays_away_is_reported_unknown_with_the_ids(
    stores: Callable[..., RedisStore], proxy: RedisProxy
) -> None:
    store = stores(proxy.url, patience=0.5)
    await store.open()
    proxy.lose_reply(to=ADD_SHA, then_refuse=True)
    with pytest.raises(OutcomeUnknown) as caught:
        await store.add([job(1), job(2)])
    assert caught.value.ids == ["j1", "j2"]
    assert caught.value.to_json()["stored"] == "unknown"
    proxy.accept()
    # the client's retry with the ids it was given: both were stored by the first try, so both are duplicates
    again = await store.add([job(1, seq=101), job(2, seq=102)])
    assert [duplicate for _, duplicate in again] == [True, True]


async def test_a_write_that_could_not_even_connect_is_a_plain_unavailable_at_once(
    stores: Callable[..., RedisStore], proxy: RedisProxy
) -> None:
    store = stores(proxy.url, patience=5.0)
    await store.open()
    proxy.refuse()
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as caught:
        await store.add([job(1)])
    assert not isinstance(caught.value, OutcomeUnknown)  # nothing left this process: nothing was stored
    assert time.monotonic() - started < 1
    proxy.accept()
    assert await store.add([job(1)]) == [(job(1), False)]


async def test_an_attempt_whose_running_mark_never_reached_redis_is_still_counted(
    stores: Callable[..., RedisStore], redis_server: RedisServer
) -> None:
    a, b = stores(redis_server.url, "a"), stores(redis_server.url, "b")
    await a.open()
    await b.open()
    await a.add([job(1)])
    [mine] = (await a.claim(1, lease=0.3)).jobs
    mine.begin_attempt(0)  # a calls the target with Poulpe-Attempt 1, then dies before its `running` mark is stored
    assert mine.attempts == 1
    await asyncio.sleep(0.4)
    [taken] = (await b.claim(1, lease=30)).jobs
    assert taken.status is Status.QUEUED and taken.attempts == 1  # attempt 1 is counted, closed as interrupted...
    assert "may not have begun" in (taken.history[-1].error or "")
    taken.begin_attempt(0)
    assert taken.attempts == 2  # ...and b runs attempt 2, not a second attempt 1
    await b.save(taken)
    # b dies too, its mark stored this time: the next process runs attempt 3
    [again] = (await a.claim(1, lease=30, now=time.time() + 60)).jobs
    assert again.status is Status.RUNNING and again.attempts == 2


async def test_a_job_given_back_without_running_keeps_its_attempt_number(
    stores: Callable[..., RedisStore], redis_server: RedisServer
) -> None:
    a = stores(redis_server.url, "a")
    await a.open()
    await a.add([job(1)])
    [held] = (await a.claim(1, lease=30)).jobs
    await a.save(held)  # a drains: the job it held ready goes back, no attempt of it began
    [again] = (await a.claim(1, lease=30)).jobs
    assert again.status is Status.QUEUED and again.attempts == 0


async def test_renewing_a_job_that_just_finished_does_not_report_it_taken(
    stores: Callable[..., RedisStore], redis_server: RedisServer
) -> None:
    a, b = stores(redis_server.url, "a"), stores(redis_server.url, "b")
    await a.open()
    await b.open()
    await a.add([job(1), job(2)])
    first, second = (await a.claim(2, lease=0.2)).jobs
    first.status, first.finished_at = Status.SUCCEEDED, time.time()
    await a.save(first)  # it finished after the renew loop listed the jobs a holds
    await asyncio.sleep(0.3)
    await b.claim(10, lease=30)  # a was too slow with the second: b takes it
    assert await a.renew([first.id, second.id], lease=30) == [second.id]


async def test_a_job_stored_before_attempts_were_counted_keeps_its_numbers(
    stores: Callable[..., RedisStore], redis_server: RedisServer, redis_prefix: str
) -> None:
    a = stores(redis_server.url, "a")
    await a.open()
    retried = job(1)
    retried.attempts = 2  # two attempts ran before this version of poulpe
    await a.add([retried])
    redis_server.client().hdel(f"{{{redis_prefix.rstrip(':')}}}:tries", "j1")
    [claimed] = (await a.claim(1, lease=30)).jobs
    assert claimed.attempts == 2 and claimed.status is Status.QUEUED  # the next attempt is the third

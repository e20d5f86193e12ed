"""The dispatch rule (poulpe/dispatch/ready.py), driven step by step with an injected clock: which ready job a free
worker takes, by priority, key turns, due time, `cc`, and the keys' pauses and limits."""

from __future__ import annotations

import asyncio

import pytest

from poulpe.dispatch.limits import Limits
from poulpe.dispatch.ready import KEY_READY_CAP, READY_CAP, Ready
from poulpe.job import Job, Method, Status
from poulpe.keys import KeyLimits


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def job(job_id: str, *, key: str | None = None, priority: int = 0, seq: int = 0, cc: tuple[int, ...] = ()) -> Job:
    return Job(id=job_id, method=Method.GET, name="http://x", key=key, priority=priority, seq=seq, cc=cc, run_at=1.0)


def ready_with(*jobs: Job, workers: int = 1, clock: Clock | None = None, **limits: KeyLimits) -> Ready:
    clock = clock or Clock()
    gate = Limits(clock=clock)
    gate.own = dict(limits)
    ready = Ready(workers, limits=gate, clock=clock)
    for j in jobs:
        ready.take(j)
    return ready


async def take(ready: Ready, worker: int = 0) -> str | None:
    """What a free worker gets now (None: it would wait)."""
    task = asyncio.ensure_future(ready.next(worker))
    await asyncio.sleep(0)
    if task.done():
        found = task.result()
        return found.id if found else None
    ready.stop()
    await task
    return None


async def test_a_key_with_thousands_of_ready_jobs_delays_another_keys_job_by_one_turn_at_most() -> None:
    ready = ready_with(*(job(f"a{n}", key="A", seq=n) for n in range(5000)))
    assert await take(ready) == "a0"
    ready.take(job("b0", key="B", seq=10_000))
    ready.take(job("b1", key="B", seq=10_001))
    got = [await take(ready) for _ in range(4)]
    # B joins the turns behind A (A's turn in progress ends first), then they alternate; within a key, acceptance order
    assert got == ["a1", "b0", "a2", "b1"]


async def test_a_job_due_now_is_admitted_at_once_while_there_is_room_for_it_and_for_its_key() -> None:
    clock = Clock()
    ready = ready_with(*(job(f"a{n}", key="A", seq=n) for n in range(KEY_READY_CAP)), clock=clock)
    later = job("later")
    later.run_at = clock.now + 60
    assert not ready.admit(later)  # not due: it waits in the feed for its time
    assert not ready.admit(job("a-more", key="A"))  # its key has KEY_READY_CAP ready: the feed parks it
    scheduled = job("b", key="B")
    scheduled.status = Status.SCHEDULED
    assert ready.admit(scheduled) and scheduled.status is Status.QUEUED and len(ready) == KEY_READY_CAP + 1
    for n in range(READY_CAP - len(ready)):
        ready.take(job(f"c{n}", key=f"C{n // KEY_READY_CAP}"))
    assert not ready.admit(job("d", key="D"))  # READY_CAP in all: the rest wait in the feed until workers catch up


async def test_jobs_without_a_key_are_one_group_that_takes_turns_with_the_keys() -> None:
    ready = ready_with(job("n0", seq=1), job("n1", seq=2), job("k0", key="K", seq=3))
    assert [await take(ready) for _ in range(3)] == ["n0", "k0", "n1"]


async def test_the_highest_priority_starts_first_whatever_its_key_or_age() -> None:
    ready = ready_with(*(job(f"low{n}", seq=n) for n in range(20)), job("urgent", key="X", priority=10, seq=99))
    ready.take(job("below", priority=-5, seq=0))
    assert await take(ready) == "urgent"
    assert await take(ready) == "low0"


async def test_cc_still_decides_which_workers_may_run_a_job_among_keys_and_priorities() -> None:
    ready = ready_with(job("only-1", key="A", priority=50, cc=(1,), seq=1), job("any", key="B", seq=2), workers=2)
    assert await take(ready, worker=0) == "any"  # the higher priority job may not run on worker 0
    assert await take(ready, worker=0) is None
    ready2 = ready_with(job("only-1", key="A", priority=50, cc=(1,), seq=1), job("any", key="B", seq=2), workers=2)
    assert await take(ready2, worker=1) == "only-1"


async def test_a_key_at_its_parallelism_waits_for_one_of_its_attempts_to_end() -> None:
    ready = ready_with(*(job(f"p{n}", key="P", seq=n) for n in range(3)), workers=3, P=KeyLimits(parallelism=2))
    assert await take(ready, 0) == "p0" and await take(ready, 1) == "p1"
    assert ready.limits.held("P") == "parallelism"
    waiting = asyncio.ensure_future(ready.next(2))
    await asyncio.sleep(0)
    assert not waiting.done()
    ready.ended(0)  # worker 0's attempt of p0 ended
    await asyncio.sleep(0)
    assert waiting.done() and waiting.result() is ready.held["p2"]
    ready.ended(1)


async def test_a_rate_is_a_token_bucket_refilled_over_its_period() -> None:
    clock = Clock()
    ready = ready_with(
        *(job(f"r{n}", key="R", seq=n) for n in range(8)), workers=8, clock=clock, R=KeyLimits(rate=5, period=1.0)
    )
    started = []
    for worker in range(8):
        got = await take(ready, worker)
        if got is None:
            break
        started.append(got)
        ready.ended(worker)
    assert len(started) == 1  # a new bucket holds one token: a key's first jobs are spread from the start
    assert ready.limits.held("R") == "rate"
    assert ready.limits.next_token("R") == pytest.approx(1000.2)
    clock.now += 0.2
    assert ready.limits.held("R") is None  # one token back after a fifth of the period
    clock.now += 10
    ready.limits.started("R")
    assert ready.limits.running["R"] == 1
    for _ in range(4):  # a quiet key has a full bucket again: at most `rate` (5) at once
        assert ready.limits.held("R") is None
        ready.limits.started("R")
    assert ready.limits.held("R") == "rate"


async def test_a_paused_key_holds_its_jobs_while_others_run_and_the_deployment_pause_holds_all() -> None:
    ready = ready_with(job("held", key="S", seq=1), job("free", key="T", seq=2), S=KeyLimits(paused=True))
    assert ready.limits.held("S") == "paused"
    assert await take(ready) == "free"
    ready.limits.paused_all = True
    ready.take(job("later", key="T", seq=3))
    assert await take(ready) is None


async def test_jobs_taken_out_of_their_order_still_start_in_rank_order_and_can_be_taken_back() -> None:
    seqs = [5, 6, 2, 7, 1, 8, 3, 9, 4, 10]  # runs in order broken by late comers (a retry, a job due earlier)
    ready = ready_with(*(job(f"j{seq}", seq=seq) for seq in seqs))
    assert ready.discard("j3") is not None and ready.discard("j8") is not None and ready.discard("nope") is None
    ready.take(job("j0", seq=0))
    started = []
    for _ in range(len(seqs) - 1):
        started.append(await take(ready))
        ready.ended(0)
    assert started == ["j0", "j1", "j2", "j4", "j5", "j6", "j7", "j9", "j10"]
    assert ready.stop() == []

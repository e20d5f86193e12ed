"""Timing rules on a clock the test moves: a result's TTL, a cron line's fire time, a retry's backoff and a start
deadline, with no wait for any (the rules are checked at the scale of hours, which no real wait could afford).

The end-to-end tests show the same rules on the real clock (tests/e2e/test_results.py, tests/e2e/test_cron.py,
tests/e2e/test_retries_dead.py, tests/e2e/test_bursts.py).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from poulpe.crontab import LEAD_S, Crontab
from poulpe.deadletter import DeadLetters
from poulpe.dispatch.local import LocalFeed
from poulpe.job import DEADLINE_PASSED, Job, Method, RetryPolicy, Status
from poulpe.manager import JobManager
from poulpe.runners import Outcome
from poulpe.store.sqlite import SqliteStore
from poulpe.validate import Limits
from tests.clock import Clock

NOON = datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC).timestamp()
TTL = 3600.0


class Answers:
    """A runner that succeeds, fails for good on names ending in /fail, and fails three times (then succeeds) on
    names ending in /flaky; it notes the clock's time of every attempt."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.started: dict[str, list[float]] = {}

    async def run(self, job: Job, attempt: int, timeout: float) -> Outcome:  # noqa: ASYNC109
        self.started.setdefault(job.id, []).append(self.clock())
        if job.name.endswith("/fail"):
            return Outcome(ok=False, final=True, error="refused")
        if job.name.endswith("/flaky") and len(self.started[job.id]) <= 3:
            return Outcome(ok=False, error="busy")
        return Outcome(ok=True, result={"ran": job.id})

    async def close(self) -> None:
        pass


@pytest.fixture
def clock() -> Clock:
    return Clock(NOON)


@pytest.fixture
def runner(clock: Clock) -> Answers:
    return Answers(clock)


@pytest.fixture
async def manager(tmp_path: Path, clock: Clock, runner: Answers) -> AsyncIterator[JobManager]:
    store = SqliteStore(tmp_path / "jobs.db")
    await store.open()
    runners = {Method.GET: runner}
    manager = JobManager(store, runners, DeadLetters(tmp_path / "dead"), workers=2, result_ttl=TTL, clock=clock)
    await manager.start()
    yield manager
    await manager.stop(1)
    await store.close()


def job(job_id: str, path: str = "/ok", **fields: object) -> Job:
    fields.setdefault("status", Status.QUEUED)
    return Job(id=job_id, method=Method.GET, name=f"http://127.0.0.1:9{path}", **fields)  # type: ignore[arg-type]


async def test_a_result_is_kept_for_its_ttl_then_gone_and_its_dead_letter_stays(
    manager: JobManager, clock: Clock, tmp_path: Path
) -> None:
    await manager.submit([job("kept"), job("refused", "/fail", retry=RetryPolicy(max=0))])
    assert (done := await manager.wait("kept", 5)) is not None and done.status is Status.SUCCEEDED
    assert (dead := await manager.wait("refused", 5)) is not None and dead.status is Status.DEAD

    clock.advance(TTL - 1)  # an hour less a second later: still there
    assert await manager.get("kept") is not None
    assert await manager.get("refused") is not None
    clock.advance(2)  # past the TTL
    assert await manager.get("kept") is None
    assert await manager.get("refused") is None
    assert list((tmp_path / "dead").rglob("refused.json"))  # a dead letter waits for a person, whatever the TTL


async def test_a_job_that_is_not_final_never_expires(manager: JobManager, clock: Clock) -> None:
    await manager.submit([job("next-week", run_at=NOON + 7 * 86400, status=Status.SCHEDULED)])
    clock.advance(2 * TTL)
    waiting = await manager.get("next-week")
    assert waiting is not None and waiting.status is Status.SCHEDULED


async def test_a_cron_line_fires_when_the_clock_reaches_its_time_and_once(
    manager: JobManager, clock: Clock, tmp_path: Path
) -> None:
    cron = tmp_path / "cron_task"
    cron.write_text("0 0 13 * * * *  http://127.0.0.1:9/daily  GET  a=1\n")  # every day at 13:00 UTC
    crontab = Crontab(cron, manager, Limits(workers=2), tz=ZoneInfo("UTC"), clock=clock)
    crontab.load()
    clock.advance(3600 - LEAD_S - 0.01)  # 12:59:59.49: its timer (0.5 s ahead of the fire) waits 10 ms of real time
    crontab.start()
    try:
        await asyncio.sleep(0.05)  # its timer ran out a few times, each time before 12:59:59.50 on the clock
        assert not (await manager.store.list_jobs(size=10)).jobs
        clock.advance(0.02)  # 12:59:59.51: the fire is stored, scheduled for 13:00
        deadline = time.monotonic() + 10
        while not (fired := (await manager.store.list_jobs(size=10)).jobs):
            assert time.monotonic() < deadline, "the line did not fire at 13:00"
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # a second fire would be submitted by now
        fired = (await manager.store.list_jobs(size=10)).jobs
        assert [j.name for j in fired] == ["http://127.0.0.1:9/daily"]
        assert fired[0].id.endswith(str(int(NOON + 3600)))
        assert (fired[0].status, fired[0].run_at) == (Status.SCHEDULED, NOON + 3600)  # it runs at 13:00, not before
        assert crontab.next[crontab.lines[0]] == NOON + 3600 + 86400  # the next fire is tomorrow's
    finally:
        await crontab.stop()


async def reached(manager: JobManager, job_id: str, check: Callable[[Job], bool]) -> Job:
    """The job once `check` holds for it (what runs on the loop takes real milliseconds, never clock time)."""
    deadline = time.monotonic() + 10
    while (found := await manager.get(job_id)) is None or not check(found):
        assert time.monotonic() < deadline, f"job {job_id}: {found}"
        await asyncio.sleep(0.005)
    return found


def failed(times: int) -> Callable[[Job], bool]:
    return lambda job: job.failures == times


def due_now(manager: JobManager) -> None:
    """What the feed's timer does when it runs out: it is armed in real time, the clock moved meanwhile."""
    assert isinstance(manager.feed, LocalFeed)
    manager.feed.timer.poke()


async def quiet_for_a_moment() -> None:
    """Long enough for anything already due to have started (nothing is due: the clock stands still)."""
    await asyncio.sleep(0.1)


async def test_a_retry_waits_its_exponential_backoff_on_the_clock_capped_at_max_interval(
    manager: JobManager, clock: Clock, runner: Answers, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(random, "uniform", lambda low, high: high)  # the jitter at its top: the whole interval
    retry = RetryPolicy(max=3, interval=3600, backoff="exponential", max_interval=3 * 3600)
    await manager.submit([job("flaky", "/flaky", retry=retry)])
    retries = []
    for failures, interval in enumerate([3600, 7200, 3 * 3600], 1):  # one hour, doubled, then capped at three
        retrying = await reached(manager, "flaky", failed(failures))
        assert retrying.status is Status.RETRYING and retrying.run_at == clock() + interval
        retries.append(retrying.run_at)
        clock.advance(interval - 1)  # a second before the retry's time: it waits
        due_now(manager)
        await quiet_for_a_moment()
        assert len(runner.started["flaky"]) == failures, "a retry started before its time"
        clock.advance(1)
        due_now(manager)
    done = await reached(manager, "flaky", lambda j: j.final)
    assert done.status is Status.SUCCEEDED and runner.started["flaky"] == [NOON, *retries]


async def test_a_job_held_by_a_paused_key_ends_dead_at_its_deadline_and_not_before(
    manager: JobManager, clock: Clock, runner: Answers
) -> None:
    await manager.controls.put("reports", b'{"paused": true}')
    await manager.submit([job("held", key="reports", deadline=NOON + 3600)])  # an hour to start
    await quiet_for_a_moment()
    clock.advance(3599)
    manager.deadlines.timer.poke()
    await quiet_for_a_moment()
    waiting = await manager.get("held")
    assert waiting is not None and waiting.status is Status.QUEUED, "it ended before its deadline"
    clock.advance(1)
    manager.deadlines.timer.poke()
    dead = await reached(manager, "held", lambda j: j.final)
    assert (dead.status, dead.error, dead.finished_at) == (Status.DEAD, DEADLINE_PASSED, NOON + 3600)
    assert "held" not in runner.started, "a job past its deadline ran"


def debounced(job_id: str, now: float, n: int) -> Job:
    """A submission under the debounce key `hook`: a minute's delay, at most five minutes after the first."""
    return job(
        job_id,
        "/hook",
        debounce="hook",
        created_at=now,
        run_at=now + 60,
        debounce_until=now + 300,
        status=Status.SCHEDULED,
        meta={"n": n},
    )


async def test_debounced_submissions_make_one_job_that_runs_a_delay_after_the_last_or_at_max_wait(
    manager: JobManager, clock: Clock, runner: Answers
) -> None:
    [(first, replaced)] = await manager.submit([debounced("d0", clock(), 0)])
    assert not replaced and first.run_at == NOON + 60
    for n in range(1, 6):  # one every 50 s: each comes within the minute, so the job waits on
        clock.advance(50)
        due_now(manager)
        [(waiting, replaced)] = await manager.submit([debounced(f"d{n}", clock(), n)])
        assert replaced and waiting.id == "d0" and waiting.meta == {"n": n}
        # a minute after this submission, never past five minutes after the first
        assert waiting.run_at == min(clock() + 60, NOON + 300)
        await quiet_for_a_moment()
        assert "d0" not in runner.started, "the job ran while submissions still came"
    clock.advance(49)
    due_now(manager)
    await quiet_for_a_moment()
    assert "d0" not in runner.started, "the job ran before five minutes"
    clock.advance(1)  # five minutes after the first submission, though the last came 50 s ago
    due_now(manager)
    done = await reached(manager, "d0", lambda j: j.final)
    assert done.status is Status.SUCCEEDED and done.meta == {"n": 5} and runner.started == {"d0": [NOON + 300]}
    assert [await manager.get(f"d{n}") for n in range(1, 6)] == [None] * 5, "a replacing submission made a job"

"""Timing rules on a clock the test moves: a result's TTL and a cron line's fire time, with no wait for either.

The end-to-end tests show the same rules on the real clock (tests/e2e/test_results.py, tests/e2e/test_cron.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from poulpe.crontab import LEAD_S, Crontab
from poulpe.deadletter import DeadLetters
from poulpe.job import Job, Method, RetryPolicy, Status
from poulpe.manager import JobManager
from poulpe.runners import Outcome
from poulpe.store.sqlite import SqliteStore
from poulpe.validate import Limits
from tests.clock import Clock

NOON = datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC).timestamp()
TTL = 3600.0


class Answers:
    """A runner that succeeds, or fails for good on names ending in /fail."""

    async def run(self, job: Job, attempt: int, timeout: float) -> Outcome:  # noqa: ASYNC109
        if job.name.endswith("/fail"):
            return Outcome(ok=False, final=True, error="refused")
        return Outcome(ok=True, result={"ran": job.id})

    async def close(self) -> None:
        pass


@pytest.fixture
def clock() -> Clock:
    return Clock(NOON)


@pytest.fixture
async def manager(tmp_path: Path, clock: Clock) -> AsyncIterator[JobManager]:
    store = SqliteStore(tmp_path / "jobs.db")
    await store.open()
    runner = Answers()
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

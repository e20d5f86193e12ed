"""`overlap=replace` when another process sharing the store made the next fire first (SPEC 10.5): the stored latest
fire is then the new fire itself, and this process, which runs the earlier fire, must still stop it."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from poulpe.aborts import REPLACED, Aborts
from poulpe.cron import parse_cron
from poulpe.crontab import Crontab
from poulpe.deadletter import DeadLetters
from poulpe.job import Method, Status
from poulpe.manager import JobManager
from poulpe.runners.exec import ExecRunner
from poulpe.store.cron_state import Mark, cron_states
from poulpe.store.sqlite import SqliteStore
from poulpe.validate import Limits
from tests.store.test_cron_state import UTC

LINE = "[overlap=replace] * * * * * * *  nap  EXEC  30\n"


@pytest.fixture
async def crontab(tmp_path: Path, exec_dir: Path) -> AsyncIterator[Crontab]:
    sqlite = SqliteStore(tmp_path / "jobs.db")
    await sqlite.open()
    aborts = Aborts()
    runners = aborts.wrap({Method.EXEC: ExecRunner(exec_dir=exec_dir)})
    manager = JobManager(sqlite, runners, DeadLetters(tmp_path / "dead"), workers=1)  # one worker: P, then F
    await manager.start()
    cron = tmp_path / "cron_task"
    cron.write_text(LINE)
    limits = Limits(workers=1, exec_dir=exec_dir)
    crontab = Crontab(cron, manager, limits, tz=UTC, states=cron_states(sqlite), aborts=aborts)
    crontab.load()
    yield crontab
    await manager.stop(1)
    await sqlite.close()


async def status_of(crontab: Crontab, job_id: str, wanted: Status, within: float) -> Status | None:
    deadline = time.monotonic() + within
    while (job := await crontab.manager.get(job_id)) is None or job.status is not wanted:
        if time.monotonic() > deadline:
            return None if job is None else job.status
        await asyncio.sleep(0.02)
    return job.status


async def test_the_earlier_fire_running_here_is_stopped_when_another_process_made_the_next_fire_first(
    crontab: Crontab,
) -> None:
    (line,) = parse_cron(LINE)
    fire = float(math.floor(time.time()))
    await crontab._fire([(line, fire)])  # this process's fire P starts here (30 s of work)
    earlier = line.job_id(fire)
    assert await status_of(crontab, earlier, Status.RUNNING, 5) is Status.RUNNING
    # Another process was quicker at the next second: it stored fire F and marked it the line's latest fire. Its
    # own replace could not stop P (P runs here), and F waits here behind P.
    following = crontab.fire_job(line, fire + 1)
    assert following is not None
    await crontab.manager.submit([following])
    assert crontab.states is not None
    await crontab.states.handled([Mark(line.fingerprint, fire + 1, following.id)])
    await crontab._fire([(line, fire + 1)])  # this process's own turn at F: the latest fire it reads is F itself
    assert await status_of(crontab, earlier, Status.CANCELLED, 5) is Status.CANCELLED, "P ran on beside F"
    stopped = await crontab.manager.get(earlier)
    assert stopped is not None and stopped.error == REPLACED
    assert await status_of(crontab, following.id, Status.RUNNING, 5) is Status.RUNNING
    assert crontab.counts["replaced"] == 1

"""What poulpe stores of each cron line, on SQLite and on Redis alike: the time up to which its fires were handled
only moves forward (two processes writing in any order), the latest fire's id goes with it, and a pause is kept.
Then catch-up, on a clock the test moves: only the fires after the stored time, the last ones of a long gap."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest

from poulpe.cron import parse_cron
from poulpe.crontab import Crontab, last_fires
from poulpe.deadletter import DeadLetters
from poulpe.errors import StoreUnavailable
from poulpe.manager import JobManager
from poulpe.store.base import Store
from poulpe.store.cron_state import CronStates, LineState, Mark, cron_states
from poulpe.store.sqlite import SqliteStore
from poulpe.validate import Limits, job_from_object
from tests.clock import Clock
from tests.store.test_contract import store

__all__ = ["store"]
UTC = ZoneInfo("UTC")
T = TypeVar("T")
T0 = 1_800_000_000.0


async def test_the_handled_time_only_moves_forward_and_the_last_id_with_it(store: Store) -> None:
    states = cron_states(store)
    assert await states.read(["a", "b"]) == {}
    await states.begin(["a"], T0)
    await states.begin(["a"], T0 + 50)  # a second process starting later does not move it
    assert await states.read(["a"]) == {"a": LineState(T0, None, None)}
    await states.handled([Mark("a", T0 + 10, "cron:a:10"), Mark("b", T0 + 5, None)])
    await states.handled([Mark("a", T0 + 8, "cron:a:8")])  # a slower process, an older fire: ignored
    await states.handled([Mark("a", T0 + 12, None)])  # skipped: the time moves, the last fire stays
    read = await states.read(["a", "b"])
    assert read["a"] == LineState(T0 + 12, "cron:a:10", None) and read["b"] == LineState(T0 + 5, None, None)
    await states.set_last("a", "cron:a:run:1")
    await states.set_paused("a", True)
    assert (await states.read(["a"]))["a"] == LineState(T0 + 12, "cron:a:run:1", True)
    await states.set_paused("a", False)
    assert (await states.read(["a"]))["a"].paused is False


def test_last_fires_gives_the_most_recent_of_a_long_gap_without_walking_it() -> None:
    (every_second,) = parse_cron("* * * * * * *  http://127.0.0.1:9/x  GET\n")
    fires, cut = last_fires(every_second, T0, T0 + 31 * 86400, UTC, 1000)
    assert cut == 1000 and fires == [T0 + 31 * 86400 - n for n in range(999, -1, -1)]
    fires, cut = last_fires(every_second, T0, T0 + 5, UTC, 1000)
    assert cut == 0 and fires == [T0 + 1, T0 + 2, T0 + 3, T0 + 4, T0 + 5]


async def until(read: Callable[[], Awaitable[T]], done: Callable[[T], bool], within: float = 10) -> T:
    deadline = asyncio.get_running_loop().time() + within
    while not done(found := await read()):
        assert asyncio.get_running_loop().time() < deadline, found
        await asyncio.sleep(0.02)
    return found


async def started_and_stopped(cron: Path, manager: JobManager, states: CronStates, clock: Clock) -> list[str]:
    """A first poulpe runs the file until each line has a stored time (its start), then stops: the lines' ids."""
    first = Crontab(cron, manager, Limits(workers=1), tz=UTC, states=states, clock=clock)
    first.load()
    first.start()
    fps = [line.fingerprint for line in first.lines]
    await until(lambda: states.read(fps), lambda found: len(found) == len(fps))
    await first.stop()
    return fps


@pytest.fixture
async def manager(tmp_path: Path) -> AsyncIterator[JobManager]:
    sqlite = SqliteStore(tmp_path / "jobs.db")
    await sqlite.open()
    manager = JobManager(sqlite, {}, DeadLetters(tmp_path / "dead"), workers=1)
    await manager.start()
    yield manager
    await manager.stop(1)
    await sqlite.close()


async def test_catch_up_fires_only_what_came_after_the_stored_time_within_its_window(
    manager: JobManager, tmp_path: Path
) -> None:
    cron = tmp_path / "cron_task"
    cron.write_text(
        "[catchup=30] */10 * * * * * *  http://127.0.0.1:9/a  GET\n*/10 * * * * * *  http://127.0.0.1:9/b  GET\n"
    )
    clock = Clock(T0)
    states = cron_states(manager.store)
    await started_and_stopped(cron, manager, states, clock)
    assert (await manager.store.list_jobs()).total == 0
    clock.advance(100)  # down for 100 s: fires at +10 .. +100; catchup=30 keeps +70 .. +100
    again = Crontab(cron, manager, Limits(workers=1), tz=UTC, states=states, clock=clock)
    again.load()
    again.start()
    await until(manager.store.list_jobs, lambda page: page.total >= 4)
    await asyncio.sleep(0.1)  # a fifth would be made by now
    await again.stop()
    ids = sorted(job.id for job in (await manager.store.list_jobs()).jobs)
    a = parse_cron(cron.read_text())[0].fingerprint
    assert ids == [f"cron:{a}:{int(T0) + s}" for s in (70, 80, 90, 100)]


async def test_fires_due_while_poulpe_was_still_starting_are_caught_up_too(manager: JobManager, tmp_path: Path) -> None:
    cron = tmp_path / "cron_task"
    cron.write_text("[catchup=60] * * * * * * *  http://127.0.0.1:9/a  GET\n")
    clock = Clock(T0)
    states = cron_states(manager.store)
    fps = await started_and_stopped(cron, manager, states, clock)
    clock.advance(10)  # down for 10 s
    again = Crontab(cron, manager, Limits(workers=1), tz=UTC, states=states, clock=clock)
    again.load()  # the file is read at +10 ...
    clock.advance(3)  # ... and the rest of the start takes 3 s on a loaded machine: +11 .. +13 came due meanwhile
    again.start()
    await until(manager.store.list_jobs, lambda page: page.total >= 13)
    await asyncio.sleep(0.1)  # a fourteenth would be made by now (+14 is not due: the clock stands at +13)
    await again.stop()
    ids = sorted(job.id for job in (await manager.store.list_jobs()).jobs)
    a = fps[0]
    assert ids == sorted(f"cron:{a}:{int(T0) + s}" for s in range(1, 14)), "every second once, none lost to the start"


async def test_a_fire_is_the_job_the_validator_makes_of_its_line(manager: JobManager, tmp_path: Path) -> None:
    cron = tmp_path / "cron_task"
    cron.write_text(
        '[jitter=3 key=reports priority=7] */10 * * * * * *  http://127.0.0.1:9/a  POST  {"x": [1, 2]}\n'
        "* * * * * * *  http://127.0.0.1:9/b  GET  a=1\n"
    )
    clock = Clock(T0)
    crontab = Crontab(cron, manager, Limits(workers=1), tz=UTC, clock=clock)
    crontab.load()
    for line in crontab.lines:
        for fire in (T0 + 10, T0 - 10):  # ahead of its time, and late
            made = crontab.fire_job(line, fire)
            assert made == job_from_object(line.job_fields(fire), Limits(workers=1), now=T0).job
            assert made is not None and made.history is not crontab.fire_job(line, fire).history  # type: ignore[union-attr]


class Away:
    """Line states whose store does not answer until told."""

    def __init__(self, inner: CronStates) -> None:
        self.inner = inner
        self.down = True

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        async def call(*args: Any) -> Any:
            if self.down:
                raise StoreUnavailable("the job store is unreachable")
            return await method(*args)

        return call


async def test_the_cron_timer_outlives_a_store_that_does_not_answer(manager: JobManager, tmp_path: Path) -> None:
    cron = tmp_path / "cron_task"
    cron.write_text("[overlap=skip] * * * * * * *  http://127.0.0.1:9/a  GET\n")
    clock = Clock(T0 + 0.99)
    states = Away(cron_states(manager.store))
    crontab = Crontab(cron, manager, Limits(workers=1), tz=UTC, states=states, clock=clock)  # type: ignore[arg-type]
    crontab.load()
    crontab.start()
    try:
        clock.advance(0.02)  # T0 + 1: due, but the line's last fire cannot be read
        await asyncio.sleep(0.2)
        assert (await manager.store.list_jobs()).total == 0
        states.down = False
        clock.advance(1)  # T0 + 2: the store answers again, the next fire is made
        deadline = asyncio.get_running_loop().time() + 5
        while (await manager.store.list_jobs()).total == 0:
            assert asyncio.get_running_loop().time() < deadline, "the timer died with the store"
            await asyncio.sleep(0.02)
    finally:
        await crontab.stop()

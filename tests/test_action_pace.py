"""A bulk action yields to intake and workers between its chunks (action_pace.py): full speed while poulpe is idle,
waiting while jobs are submitted or its queued jobs are not taken, and never starved. Told with a clock that moves
only when the action waits, and signals the story sets: no timing of this machine is asserted."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from pytest import approx

from poulpe.action_pace import DRAIN_WAIT, PAUSE, QUIET, SHARE, STEP, Held, Intake, Pace, Signals
from poulpe.batch_record import Batch
from poulpe.deadletter import DeadLetters
from poulpe.job import Job, Method
from poulpe.manager import JobManager
from poulpe.store.sqlite import SqliteStore


class Story:
    """A clock moved by the pace's own waits; `during(t)` says how many jobs are submitted per second at time t,
    `backlog(t)` how many due jobs wait for a worker."""

    def __init__(
        self,
        during: Callable[[float], float] = lambda t: 0.0,
        backlog: Callable[[float], int] = lambda t: 0,
        late: float = 0.0,
    ) -> None:
        self.now = 0.0
        self.late = late  # each wait ends this much later than asked: the loop had other work
        self.during = during
        self.waits: list[float] = []
        self.intake = Intake()
        self._backlog = backlog
        self._submitted = 0.0

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.passes(seconds + self.late)

    def chunk(self, took: float) -> None:
        """The action works for `took` seconds; intake goes on meanwhile."""
        self.passes(took)

    def passes(self, seconds: float) -> None:
        for _ in range(10):
            self._submitted += self.during(self.now) * seconds / 10
            self.now += seconds / 10
        while self.intake.submitted < int(self._submitted):
            with self.intake.one(1):  # submitted and answered
                pass

    def pace(self, room: int = 200) -> Pace:
        return Pace(
            Signals(self.intake, lambda: self._backlog(self.now), room), clock=lambda: self.now, sleep=self.sleep
        )


async def test_with_no_job_submitted_an_action_goes_at_full_speed() -> None:
    story = Story()
    pace = story.pace()
    for _ in range(5):
        story.chunk(0.1)
        assert await pace.rest(0.1) == approx(PAUSE)
    assert story.waits == [PAUSE] * 5


async def test_under_steady_intake_an_action_takes_its_share_of_the_time_and_no_more() -> None:
    story = Story(during=lambda t: 5000.0)
    pace = story.pace()
    began = story.now
    for _ in range(10):
        story.chunk(0.1)
        await pace.rest(0.1)
    share = 10 * 0.1 / (story.now - began)
    assert SHARE * 0.95 <= share <= SHARE * 1.05  # the action still finishes, in about ten times its own time
    assert max(story.waits) <= STEP  # it waits in short steps, so it sees intake stop


async def test_under_steady_intake_the_time_a_chunk_waits_for_the_store_counts_as_its_rest() -> None:
    story = Story(during=lambda t: 5000.0)
    pace = story.pace()
    began = story.now
    for _ in range(10):
        story.chunk(0.1)  # 0.1 s from start to end, of which 0.02 s of its own work on the loop; the rest: commits
        await pace.rest(0.1, own=0.02)
    share = 10 * 0.02 / (story.now - began)
    assert SHARE * 0.95 <= share <= SHARE * 1.05  # the loop is the action's a tenth of the time, no more
    assert story.now - began <= 10 * (0.02 / SHARE + PAUSE) + 1e-9  # not nine times the whole 0.1 s each chunk
    story.chunk(0.3)
    assert await pace.rest(0.3, own=0.02) == approx(PAUSE)  # a chunk that waited long enough rests no more


async def test_the_time_a_chunk_holds_the_loop_is_counted_apart_from_its_waits() -> None:
    now = [0.0]
    stored: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def chunk() -> int:
        now[0] += 0.002  # its own work
        await asyncio.sleep(0)
        now[0] += 0.003
        await stored  # the commit: intake runs meanwhile
        now[0] += 0.001
        return 7

    async def intake() -> None:
        await asyncio.sleep(0)
        now[0] += 1.0
        stored.set_result(None)

    acting = Held(chunk(), clock=lambda: now[0])
    assert await asyncio.gather(acting, intake()) == [7, None]
    assert acting.seconds == approx(0.006)

    cleaned = []

    async def cut() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.append(True)

    async def run_cut() -> None:
        await Held(cut())

    task = asyncio.ensure_future(run_cut())
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled() and cleaned == [True]  # a stop reaches the chunk where it waits


async def test_an_action_goes_on_once_intake_has_been_quiet_a_while() -> None:
    story = Story(during=lambda t: 2000.0 if t < 0.25 else 0.0)  # a burst of submissions that ends at 0.25 s
    pace = story.pace()
    story.chunk(0.1)
    rested = await pace.rest(0.1)
    assert 0.15 + QUIET <= rested <= 0.15 + QUIET + 2 * STEP + PAUSE + 1e-9  # not the 0.9 s steady intake holds it
    story.chunk(0.1)
    assert await pace.rest(0.1) == approx(PAUSE)  # idle again: full speed


async def test_a_few_submissions_hold_an_action_only_until_intake_is_quiet() -> None:
    story = Story(during=lambda t: 100.0 if t < 0.1 else 0.0)  # jobs submitted while the chunk ran, then none
    pace = story.pace()
    story.chunk(0.1)
    assert await pace.rest(0.1) == approx(QUIET + PAUSE)  # quiet a while, then on


async def test_an_action_waits_for_workers_to_take_the_jobs_it_queued() -> None:
    story = Story(backlog=lambda t: 600 if t < 1.1 else 150)  # workers bring the backlog under the room at 1.1 s
    pace = story.pace(room=200)
    story.chunk(0.1)
    rested = await pace.rest(0.1)
    assert 1.0 <= rested <= 1.0 + STEP + PAUSE + 1e-9  # no job submitted: only the backlog held it


async def test_a_submission_waiting_for_its_commit_holds_an_action_too() -> None:
    story = Story()
    pace = story.pace()
    story.chunk(0.1)
    with story.intake.one(1):  # submitted during the chunk, its commit slow: not answered for the whole rest
        rested = await pace.rest(0.1)
    assert rested == approx(0.1 * (1 - SHARE) / SHARE + PAUSE)
    story.chunk(0.1)
    assert await pace.rest(0.1) == approx(PAUSE)  # answered, and nothing since: full speed


async def test_a_loop_that_wakes_late_is_busy_though_no_submission_is_counted_yet() -> None:
    story = Story(during=lambda t: 100.0 if t < 0.1 else 0.0, late=0.008)  # requests read late, if at all
    pace = story.pace()
    story.chunk(0.1)
    assert await pace.rest(0.1) == approx(0.1 * (1 - SHARE) / SHARE + PAUSE, abs=STEP + 0.008)  # its share only


async def test_a_backlog_that_never_drains_holds_each_chunk_a_bounded_time() -> None:
    story = Story(backlog=lambda t: 10_000)  # a key held back: its jobs stay ready
    pace = story.pace(room=200)
    for _ in range(3):
        story.chunk(0.1)
        rested = await pace.rest(0.1)
        assert DRAIN_WAIT <= rested <= DRAIN_WAIT + STEP + PAUSE + 1e-9


async def test_a_rest_never_outlasts_the_hold_the_action_renews_at_each_chunk() -> None:
    story = Story(during=lambda t: 5000.0, backlog=lambda t: 10_000)  # a slow store: a chunk took 20 s
    pace = Pace(Signals(story.intake, lambda: story._backlog(story.now)), clock=lambda: story.now, sleep=story.sleep,
                longest=30.0)  # fmt: skip
    story.chunk(20.0)
    assert await pace.rest(20.0) == approx(30.0 + PAUSE, abs=STEP)  # not 180 s: another process would take over


def test_the_rule_in_one_table() -> None:
    pace = Pace(Signals(room=200))
    took = 0.1
    assert pace.step(took, 0.0, took, 0) == 0.0  # nothing submitted during the chunk: go
    assert pace.step(took, 0.0, 0.0, 0) == STEP  # submissions during the chunk: wait
    assert pace.step(took, 0.5, QUIET - STEP, 0) == STEP  # not quiet long enough yet: wait on
    assert pace.step(took, 0.5, QUIET, 0) == 0.0  # quiet long enough: go
    assert pace.step(took, took * (1 - SHARE) / SHARE - 0.004, 0.0, 0) == 0.0  # its share reached (to a few ms): go
    assert pace.step(took, 0.0, QUIET, 201) == STEP  # the backlog over the room: wait for workers
    assert pace.step(took, DRAIN_WAIT, QUIET, 201) == 0.0  # but not forever
    assert pace.step(took, 0.0, QUIET, 200) == 0.0


async def test_a_poulpe_counts_its_submissions_for_its_actions(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "jobs.db")
    await store.open()
    manager = JobManager(store, {}, DeadLetters(tmp_path / "dead"), workers=1)
    await manager.start()
    try:
        now = time.time()
        jobs = [Job(id=f"j{n}", method=Method.QUEUE, name="resize", created_at=now, run_at=now) for n in range(3)]
        submitting = asyncio.ensure_future(manager.submit(jobs[:2]))
        await asyncio.sleep(0)
        assert (manager.intake.submitted, manager.intake.in_flight) == (2, 1)  # under way: intake is busy
        await submitting
        await manager.submit_batch(Batch(id="b", total=1, pending=1, created_at=now), jobs[2:])
        assert (manager.intake.submitted, manager.intake.in_flight) == (3, 0)
    finally:
        await manager.stop(1)
        await store.close()

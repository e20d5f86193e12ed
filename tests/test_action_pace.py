"""A bulk action yields to intake and workers between its chunks (action_pace.py): full speed while poulpe is idle,
waiting while jobs are submitted or its queued jobs are not taken, and never starved. Told with a clock that moves
only when the action waits, and signals the story sets: no timing of this machine is asserted."""

from __future__ import annotations

from collections.abc import Callable

from pytest import approx

from poulpe.action_pace import DRAIN_WAIT, PAUSE, QUIET, SHARE, Pace, Signals


class Story:
    """A clock moved by the pace's own waits; `during(t)` says how many jobs are submitted per second at time t."""

    def __init__(self, during: Callable[[float], float] = lambda t: 0.0, backlog: Callable[[float], int] = lambda t: 0):
        self.now = 0.0
        self.during = during
        self.waits: list[float] = []
        self._backlog = backlog
        self._submitted = 0.0

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        for _ in range(10):  # submissions arrive while the action waits
            self._submitted += self.during(self.now) * seconds / 10
            self.now += seconds / 10

    def chunk(self, took: float) -> None:
        """The action works for `took` seconds; intake goes on meanwhile."""
        self._submitted += self.during(self.now) * took
        self.now += took

    def pace(self, room: int = 200) -> Pace:
        signals = Signals(lambda: int(self._submitted), lambda: self._backlog(self.now), room)
        return Pace(signals, clock=lambda: self.now, sleep=self.sleep)


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
    assert max(story.waits) <= QUIET  # it waits in short steps, so it sees intake stop


async def test_an_action_goes_on_at_the_first_quiet_step_once_intake_stops() -> None:
    story = Story(during=lambda t: 2000.0 if t < 0.25 else 0.0)  # a burst of submissions that ends at 0.25 s
    pace = story.pace()
    story.chunk(0.1)
    rested = await pace.rest(0.1)
    assert 0.15 <= rested <= 0.15 + 2 * QUIET + PAUSE + 1e-9  # not the 0.9 s a steady intake would hold it
    story.chunk(0.1)
    assert await pace.rest(0.1) == approx(PAUSE)  # idle again: full speed


async def test_a_few_submissions_hold_an_action_only_until_intake_is_quiet() -> None:
    story = Story(during=lambda t: 100.0 if t < 0.1 else 0.0)  # jobs submitted while the chunk ran, then none
    pace = story.pace()
    story.chunk(0.1)
    assert await pace.rest(0.1) == approx(QUIET + PAUSE)  # one quiet step, then on


async def test_an_action_waits_for_workers_to_take_the_jobs_it_queued() -> None:
    story = Story(backlog=lambda t: 600 if t < 1.1 else 150)  # workers bring the backlog under the room at 1.1 s
    pace = story.pace(room=200)
    story.chunk(0.1)
    rested = await pace.rest(0.1)
    assert 1.0 <= rested <= 1.0 + QUIET + PAUSE + 1e-9  # no job submitted: only the backlog held it


async def test_a_backlog_that_never_drains_holds_each_chunk_a_bounded_time() -> None:
    story = Story(backlog=lambda t: 10_000)  # a key held back: its jobs stay ready
    pace = story.pace(room=200)
    for _ in range(3):
        story.chunk(0.1)
        rested = await pace.rest(0.1)
        assert DRAIN_WAIT <= rested <= DRAIN_WAIT + QUIET + PAUSE + 1e-9


def test_the_rule_in_one_table() -> None:
    pace = Pace(Signals(room=200))
    took = 0.1
    assert pace.step(took, 0.0, 0, 0) == 0.0  # idle: go
    assert pace.step(took, 0.0, 3, 0) == QUIET  # submissions during the chunk: a quiet step first
    assert pace.step(took, 0.5, 3, 0) == QUIET  # still arriving: wait on
    assert pace.step(took, 0.89, 3, 0) == approx(0.01)  # the last step only to the share's end
    assert pace.step(took, 0.9, 3, 0) == 0.0  # the action's share reached: go whatever the intake
    assert pace.step(took, 0.0, 0, 201) == QUIET  # the backlog over the room: wait for workers
    assert pace.step(took, DRAIN_WAIT, 0, 201) == 0.0  # but not forever
    assert pace.step(took, 0.0, 0, 200) == 0.0

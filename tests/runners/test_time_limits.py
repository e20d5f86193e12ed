"""Attempts' time limits share one timer (poulpe/runners/time_limits.py): each attempt still ends at its own time."""

from __future__ import annotations

import asyncio
import time

import pytest

from poulpe.runners.time_limits import SWEEP, Limits


async def attempt(limits: Limits, limit_s: float, runs_for: float) -> str:
    """An attempt that runs `runs_for` seconds under a limit of `limit_s` seconds: what became of it."""
    limit = limits.start(limit_s)
    try:
        await asyncio.sleep(runs_for)
        return "ended"
    except asyncio.CancelledError:
        if limit.expired():
            return "timed out"
        raise
    finally:
        limit.end()


async def test_attempts_of_several_timeouts_each_time_out_at_their_own_time() -> None:
    limits = Limits(asyncio.get_running_loop())
    began = time.monotonic()
    ended: dict[float, float] = {}

    async def timed(limit_s: float) -> str:
        what = await attempt(limits, limit_s, 30)
        ended[limit_s] = time.monotonic() - began
        return what

    outcomes = await asyncio.gather(timed(0.6), timed(0.2), timed(0.4), timed(0.2))
    assert outcomes == ["timed out"] * 4
    assert sorted(ended, key=ended.__getitem__) == [0.2, 0.4, 0.6]
    for timeout, after in ended.items():
        assert timeout <= after < timeout + 1.0  # generous: a loaded machine runs the loop late
    limits.close()


async def test_an_attempt_that_ends_in_time_is_left_alone() -> None:
    limits = Limits(asyncio.get_running_loop())
    assert await attempt(limits, 0.1, 0.01) == "ended"
    await asyncio.sleep(0.3)  # past the ended attempt's time: nothing is cancelled
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
    # a later attempt of the same worker still gets its own limit
    assert await attempt(limits, 0.1, 30) == "timed out"
    limits.close()


async def test_a_later_attempt_with_a_shorter_timeout_is_not_held_by_a_longer_one() -> None:
    limits = Limits(asyncio.get_running_loop())
    long = asyncio.create_task(attempt(limits, 5, 30))
    await asyncio.sleep(0.05)
    began = time.monotonic()
    assert await attempt(limits, 0.1, 30) == "timed out"
    assert time.monotonic() - began < 1.5
    long.cancel()  # someone else's cancellation (a shutdown) is not the limit's: it goes on
    with pytest.raises(asyncio.CancelledError):
        await long
    limits.close()


async def test_a_long_attempt_does_not_keep_every_ended_limit_behind_it() -> None:
    limits = Limits(asyncio.get_running_loop())
    long = asyncio.create_task(attempt(limits, 30, 30))
    await asyncio.sleep(0)
    for _ in range(3 * SWEEP):
        assert await attempt(limits, 30, 0) == "ended"
    assert sum(len(queue) for queue in limits._queues.values()) <= SWEEP + 1
    long.cancel()
    with pytest.raises(asyncio.CancelledError):
        await long
    limits.close()


async def test_many_attempts_running_at_once_are_not_copied_at_every_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """More than SWEEP attempts of one timeout still running (a large --workers): a sweep finds nothing to drop, so
    the next one waits until the queue has doubled instead of copying it again at each start."""
    from poulpe.runners import time_limits

    copies = 0
    made = time_limits._Queue

    class Counted(made):  # type: ignore[valid-type,misc]
        def __init__(self, *args: object) -> None:
            nonlocal copies
            copies += bool(args)
            super().__init__(*args)

    monkeypatch.setattr(time_limits, "_Queue", Counted)
    limits = Limits(asyncio.get_running_loop())
    running = [asyncio.create_task(attempt(limits, 30, 30)) for _ in range(SWEEP + 200)]
    await asyncio.sleep(0)
    assert copies == 1  # one sweep at SWEEP, none for the 200 starts after it
    for task in running:
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)
    limits.close()

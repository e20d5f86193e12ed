"""A clock a test moves by hand, for the classes that take `clock=` (and `sleep=`): a timing rule is checked without
waiting it out."""

from __future__ import annotations

import asyncio


class Clock:
    """Unix seconds that stand still until the test moves them; `sleep` ends when the test has moved past it."""

    def __init__(self, now: float) -> None:
        self.now = now
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
        due = [(at, sleeper) for at, sleeper in self._sleepers if at <= self.now]
        self._sleepers = [(at, sleeper) for at, sleeper in self._sleepers if at > self.now]
        for _, sleeper in due:
            if not sleeper.done():
                sleeper.set_result(None)

    async def sleep(self, seconds: float) -> None:
        """asyncio.sleep on this clock: returns once `advance` has moved it `seconds` on."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        sleeper = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.now + seconds, sleeper))
        await sleeper

    @property
    def sleeping(self) -> int:
        """How many sleeps wait for the clock now."""
        return sum(not sleeper.done() for _, sleeper in self._sleepers)

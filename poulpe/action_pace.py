"""How a bulk action (actions.py) yields to intake and workers between its chunks.

An action is background work: it goes at full speed while nothing else asks for the process, and waits while jobs
are being submitted or while the jobs it queued have not been taken by workers yet. After a chunk during which a
job was submitted, it waits in short steps until intake has been quiet for `QUIET`: no job submitted, none under
way (a submission waiting for its commit is intake at work too), and the loop on time (a step that wakes late means
the loop, or the machine, had other work: requests not yet read are not counted anywhere else). Two bounds keep it
moving whatever the load: under steady intake it still holds the event loop `SHARE` of the time (a chunk and its
rest last at most its own time / SHARE, so it finishes), and a backlog that does not drain (keys held back) holds a
chunk at most `DRAIN_WAIT` seconds.

A chunk's own time is the time its steps held the event loop (`Held`), not the time from its start to its end: most
of that it waits for the store's commit (shared with intake's writes of the same moment, one fsync for both) or a
thread, and intake runs meanwhile. Counting the waits too made the action rest nine times a commit's latency after
each chunk, which on a busy machine is most of a second for a few milliseconds of work. What the chunk costs the
store's writer and the threads is counted as `ALL_THREADS` times its time on the loop, so `SHARE` bounds the
action's part of the whole process's work, not only of the loop's.

The signals are cheap counts: the submissions to this process (`Intake`, kept by JobManager.submit), and the due
jobs waiting for a worker here (0 while the deployment is paused: then nothing drains and nothing runs, by the
operator's choice, so the retried jobs only wait).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Coroutine, Generator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Generic, TypeVar, cast

SHARE = 0.07  # of the work, an action's least under steady intake (0.1 left intake 77 %, bench/notes.md)
QUIET = 0.05  # intake this long without a submission (none under way, the loop on time) is idle
STEP = 0.01  # a step of the wait
LATE = 0.005  # a step that wakes this much late: the loop or the machine is busy
DRAIN_WAIT = 2.0  # the longest a chunk waits for the ready backlog to drain
PAUSE = 0.005  # the least rest between chunks: what was woken meanwhile goes first
# A chunk's work in all of the process's threads per second its steps hold the loop: a retried job costs about 17 µs
# on the loop, 20 in the store's writer and 20 in the thread that removes its letter (bench/notes.md)
ALL_THREADS = 3.0
T = TypeVar("T")


def _none() -> int:
    return 0


class Intake:
    """Submissions to a process: how many began (only the increase matters), how many are not answered yet. A
    submission is counted with `with intake.one(jobs):` around it."""

    def __init__(self) -> None:
        self.submitted = 0
        self.in_flight = 0
        self._jobs = 0

    def one(self, jobs: int) -> Intake:
        self._jobs = jobs
        return self

    def __enter__(self) -> None:
        self.submitted += self._jobs
        self.in_flight += 1

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.in_flight -= 1


@dataclass(frozen=True)
class Signals:
    """What the process tells an action about its load."""

    intake: Intake = field(default_factory=Intake)
    backlog: Callable[[], int] = _none  # due jobs waiting for a worker here; 0 while the deployment is paused
    room: int = 200  # the backlog an action may leave for the workers before it waits for them


class Pace:
    """One running action's pace. `step` is the rule; `rest` applies it with the real (or a test's) clock."""

    def __init__(
        self,
        signals: Signals,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        longest: float = math.inf,
    ) -> None:
        self.signals = signals
        self.longest = longest  # a rest never outlasts the action's hold, renewed at each chunk
        self.clock = clock
        self.sleep = sleep
        self._seen = signals.intake.submitted  # submissions counted from the action's start

    def step(self, took: float, waited: float, quiet: float, backlog: int, own: float | None = None) -> float:
        """How long to wait next after a chunk that took `took` seconds, of which `own` (all of it when not told)
        held the event loop, having waited `waited` since it ended; `quiet`: how long intake has been quiet (the
        chunk's time when no job was submitted during it); `backlog`: due jobs waiting for a worker. 0: go on with
        the next chunk."""
        own = took if own is None else own
        left = own / SHARE - took - waited if quiet < QUIET else 0.0
        if backlog > self.signals.room:
            left = max(left, DRAIN_WAIT - waited)
        left = min(left, self.longest - waited)
        return min(STEP, left) if left > PAUSE else 0.0  # the last few ms go with the pause every chunk ends with

    async def rest(self, took: float, own: float | None = None) -> float:
        """Wait after a chunk as `step` says; the time waited."""
        began = self.clock()
        waited = 0.0
        quiet = 0.0 if self._busy() else max(took, QUIET)
        while (wait := self.step(took, waited, quiet, self.signals.backlog(), own)) > 0:
            await self.sleep(wait)
            now = self.clock() - began
            slept, waited = now - waited, now
            quiet = 0.0 if self._busy() or slept > wait + LATE else quiet + slept
        await self.sleep(PAUSE)
        self._seen = self.signals.intake.submitted  # the next chunk's count starts here
        return self.clock() - began

    def _busy(self) -> bool:
        intake = self.signals.intake
        arrived, self._seen = intake.submitted != self._seen, intake.submitted
        return arrived or intake.in_flight > 0


class Held(Generic[T]):
    """Awaits a coroutine and adds up the time its steps held the event loop (the code between two of its awaits):
    a chunk's own work, apart from the time it waits for the store's commit or a thread, while intake runs."""

    def __init__(self, coro: Coroutine[Any, Any, T], clock: Callable[[], float] = time.perf_counter) -> None:
        self.coro = coro
        self.clock = clock
        self.seconds = 0.0

    def __await__(self) -> Generator[Any, Any, T]:
        sent: Any = None
        thrown: BaseException | None = None
        while True:
            began = self.clock()
            try:
                waiting = self.coro.send(sent) if thrown is None else self.coro.throw(thrown)
            except StopIteration as stop:
                return cast(T, stop.value)
            finally:
                self.seconds += self.clock() - began
            sent, thrown = None, None
            try:
                sent = yield waiting  # the future the coroutine waits on, to the task that runs it
            except GeneratorExit:
                self.coro.close()
                raise
            except BaseException as exc:  # a cancellation, thrown into the coroutine where it waits
                thrown = exc

"""The SQLite store's part of bursts and windows (SPEC 10.2): start deadlines found again at a restart, unique
windows and debounce windows. This process alone owns the file, so a window is decided in memory, where nothing can
come between the look and the take, and recorded in the job's own record."""

from __future__ import annotations

import heapq
import math
import sqlite3
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

import msgspec

from poulpe.job import Job, Status, decode_job
from poulpe.store.sqlite_writer import Insert, Update


def deadlines(conn: sqlite3.Connection) -> list[tuple[float, int, str]]:
    """(deadline, seq, id) of waiting jobs never started; only records that name a deadline are decoded."""
    rows = conn.execute(
        "SELECT data FROM jobs WHERE status IN ('scheduled', 'queued', 'retrying')"
        " AND instr(data, CAST('\"deadline\":' AS BLOB)) > 0"
    )
    jobs = [decode_job(row[0]) for row in rows]
    return [(job.deadline, job.seq, job.id) for job in jobs if job.deadline is not None and not job.attempts]


# A unique window is decided in memory (this process owns the file) and recorded in its job's own record, which the
# same statement stores: the fast single-statement insert stays, and a job is never stored without its window. A
# partial index finds the jobs that had one when the store opens (an instr per insert; no JSON is parsed).
_WINDOWED = "instr(data, CAST('\"unique_until\":' AS BLOB)) > 0"
SCHEMA = f"CREATE INDEX IF NOT EXISTS jobs_windowed ON jobs (seq) WHERE {_WINDOWED};\n"


class _Window(msgspec.Struct):
    id: str
    unique: str | None = None
    unique_until: float | None = None


_window_decoder = msgspec.json.Decoder(_Window)


_TICKS = 10  # per second: the entries ending within one tenth of a second share a place in `Ends`


class Ends:
    """When keys' entries end, soonest first, by the tenth of a second: a heap of those ticks and the keys ending in
    each (a busy intake opens hundreds of windows a tick: one heap entry for all of them, not one each). Nothing here
    is a container per entry (a tuple each would be): every one lives as long as its window and would count towards
    the garbage collector's passes, which then walk the big dicts again and again."""

    def __init__(self) -> None:
        self._heap: list[int] = []
        self.first: float = math.inf  # the time by which the soonest entry ends, to the tick (inf: none)
        self._keys: dict[int, str | list[str]] = {}  # the ticks in the heap (each once) -> the key(s) ending then

    def add(self, end: float, key: str) -> None:
        tick = math.ceil(end * _TICKS)
        keys = self._keys.get(tick)
        if keys is None:
            self._keys[tick] = key
            heapq.heappush(self._heap, tick)
            self.first = self._heap[0] / _TICKS
        elif isinstance(keys, str):
            self._keys[tick] = [keys, key]
        else:
            keys.append(key)

    def ended(self, now: float) -> Iterator[str]:
        """The key of every entry that ended by `now` (up to a tick late), each once; the caller drops those whose
        window it holds as ended, not renewed since."""
        while self._heap and self._heap[0] <= now * _TICKS:
            keys = self._keys.pop(heapq.heappop(self._heap))
            if isinstance(keys, str):
                yield keys
            else:
                yield from keys
        self.first = self._heap[0] / _TICKS if self._heap else math.inf


class UniqueWindows:
    """Open unique windows by key: their end (`open`) and the id of the job holding each (`holders`). Read from the
    jobs' records at open."""

    def __init__(self) -> None:
        self.open: dict[str, float] = {}
        self.holders: dict[str, str] = {}
        self._ends = Ends()  # the windows that end first are forgotten first
        self.accepting: dict[str, Job] = {}  # jobs whose insert is on its way: the holders of windows already

    def load(self, conn: sqlite3.Connection, now: float) -> None:
        """The windows still open, from the records of the jobs that took one."""
        for row in conn.execute(f"SELECT data FROM jobs WHERE {_WINDOWED}"):
            w = _window_decoder.decode(row[0])
            if w.unique and w.unique_until and w.unique_until > now:
                self._open(w.unique, w.id, w.unique_until)

    async def add(
        self, jobs: Sequence[Job], reader: sqlite3.Connection, write: Callable[[Insert], Awaitable[Any]]
    ) -> list[tuple[Job, bool]]:
        """Store the jobs whose window is free (`write`); answer the others with the job holding their window."""
        held = self.take(jobs, reader)
        rest = jobs if held is None else [job for job in jobs if job.id not in held]
        try:
            stored: list[tuple[Job, bool]] = await write(Insert(rest)) if rest else []
        except BaseException:
            self.settle(rest, None)
            raise
        self.settle(rest, stored)
        if held is None:
            return stored
        answers = iter(stored)
        return [(held[job.id], True) if job.id in held else next(answers) for job in jobs]

    def take(self, jobs: Sequence[Job], reader: sqlite3.Connection) -> dict[str, Job] | None:
        """Decide, in order, which new jobs take their window (to `settle` once their insert is answered); the
        others by id, with the job holding their window (None: every job took its window, or had none)."""
        held: dict[str, Job] | None = None
        open_, holders, ends = self.open, self.holders, self._ends
        for job in jobs:
            key, now = job.unique, job.created_at
            if key is None:
                continue
            if ends.first <= now:
                self._forget_ended(now)
            end = open_.get(key)
            if end is not None and end > now and holders[key] != job.id:
                first = self.accepting.get(holders[key]) or _job(reader, holders[key])
                if first is not None:
                    held = held or {}
                    held[job.id] = first
                    continue
            end = job.unique_until or now
            open_[key], holders[key] = end, job.id
            ends.add(end, key)
            self.accepting[job.id] = job
        return held

    def settle(self, jobs: Sequence[Job], stored: Sequence[tuple[Job, bool]] | None) -> None:
        """The insert of the jobs that took their window was answered (`stored`, None: the write failed): a window
        stays with its job once stored, and goes when its job was not, or when its id was known already (the answer
        is that job, which took no window)."""
        accepting, holders = self.accepting, self.holders
        for i, job in enumerate(jobs):
            key = job.unique
            if key is None:
                continue
            accepting.pop(job.id, None)
            if (stored is None or stored[i][1]) and holders.get(key) == job.id:
                del self.open[key], holders[key]

    def _open(self, key: str, job_id: str, end: float) -> None:
        self.open[key] = end
        self.holders[key] = job_id
        self._ends.add(end, key)

    def _forget_ended(self, now: float) -> None:
        for key in self._ends.ended(now):
            end = self.open.get(key)
            if end is not None and end <= now:  # not renewed since: a renewed window ends later
                del self.open[key], self.holders[key]


def _job(conn: sqlite3.Connection, job_id: str) -> Job | None:
    row = conn.execute("SELECT data FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return decode_job(row[0]) if row else None


KEEP_S = 86400.0  # how long after its run time a debounce window's entry is kept (Redis's key lives as long)
_WAITING = (Status.SCHEDULED, Status.QUEUED)


class DebounceWindows:
    """The job waiting under each debounce key, and when its entry goes (a day after its run time, by then it has
    started: the next submission opens a new window anyway). Read from the waiting jobs when the store opens."""

    def __init__(self) -> None:
        self.pending: dict[str, tuple[str, float]] = {}
        self._ends: list[tuple[float, str]] = []
        self._writing: dict[str, Job] = {}  # the version of a pending job on its way to the file

    def load(self, conn: sqlite3.Connection) -> None:
        rows = conn.execute(
            "SELECT data FROM jobs WHERE status IN ('scheduled', 'queued')"
            " AND instr(data, CAST('\"debounce\":' AS BLOB)) > 0"
        )
        for job in (decode_job(row[0]) for row in rows):
            if job.debounce is not None and not job.attempts:
                self._point(job)

    async def submit(
        self,
        job: Job,
        replace: Callable[[Job], Job | None],
        reader: sqlite3.Connection,
        write: Callable[[Insert | Update], Awaitable[Any]],
    ) -> tuple[Job, bool]:
        """Store.debounce: decided here, with nothing in between (this process owns the file), then written."""
        key = job.debounce or ""
        self._forget_ended(job.created_at)
        current = self.pending.get(key)
        waiting = None
        if current is not None:
            waiting = self._writing.get(current[0]) or _job(reader, current[0])
        if waiting is not None and waiting.status in _WAITING and not waiting.attempts:
            replacement = replace(waiting)
            if replacement is not None:
                self._point(replacement)
                await self._write(replacement, write(Update(replacement)))
                return replacement, True
        self._point(job)
        [(stored, known)] = await self._write(job, write(Insert([job])))
        if known and self.pending.get(key, ("",))[0] == job.id:  # its id was taken already: no window opened
            del self.pending[key]
        return stored, False

    async def _write(self, job: Job, written: Awaitable[Any]) -> Any:
        self._writing[job.id] = job
        try:
            return await written
        finally:
            if self._writing.get(job.id) is job:
                del self._writing[job.id]

    def _point(self, job: Job) -> None:
        end = job.run_at + KEEP_S
        self.pending[job.debounce or ""] = (job.id, end)
        heapq.heappush(self._ends, (end, job.debounce or ""))

    def _forget_ended(self, now: float) -> None:
        while self._ends and self._ends[0][0] <= now:
            end, key = heapq.heappop(self._ends)
            if self.pending.get(key, ("", 0.0))[1] == end:
                del self.pending[key]


class Windows:
    def __init__(self) -> None:
        self.unique = UniqueWindows()
        self.debounce = DebounceWindows()

    def load(self, conn: sqlite3.Connection, now: float) -> None:
        self.unique.load(conn, now)
        self.debounce.load(conn)

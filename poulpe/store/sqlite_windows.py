"""The SQLite store's part of bursts and windows (SPEC 10.2): start deadlines found again at a restart, unique
windows and debounce windows. This process alone owns the file, so a window is decided in memory, where nothing can
come between the look and the take, and recorded in the job's own record."""

from __future__ import annotations

import heapq
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
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


class UniqueWindows:
    """Open unique windows by key: (the id of the job holding it, its end). Read from the `windows` table at open."""

    def __init__(self) -> None:
        self.open: dict[str, tuple[str, float]] = {}
        self._ends: list[tuple[float, str]] = []  # a heap: the windows that end first are forgotten first
        self.accepting: dict[str, Job] = {}  # jobs whose insert is on its way: the holders of windows already

    def load(self, conn: sqlite3.Connection, now: float) -> None:
        """The windows still open, from the records of the jobs that took one."""
        found = [_window_decoder.decode(row[0]) for row in conn.execute(f"SELECT data FROM jobs WHERE {_WINDOWED}")]
        self.open = {
            w.unique: (w.id, w.unique_until) for w in found if w.unique and w.unique_until and w.unique_until > now
        }
        self._ends = [(until, key) for key, (_, until) in self.open.items()]
        heapq.heapify(self._ends)

    async def add(
        self, jobs: Sequence[Job], reader: sqlite3.Connection, write: Callable[[Insert], Awaitable[Any]]
    ) -> list[tuple[Job, bool]]:
        """Store the jobs whose window is free (`write`); answer the others with the job holding their window."""
        held, took = self.take(jobs, reader)
        rest = [job for job in jobs if job.id not in held] if held else list(jobs)
        try:
            stored: list[tuple[Job, bool]] = await write(Insert(rest)) if rest else []
        except BaseException:
            self.settle(took, set())
            raise
        self.settle(took, {job.id for job, known in stored if not known})
        if not held:
            return stored
        answers = iter(stored)
        return [(held[job.id], True) if job.id in held else next(answers) for job in jobs]

    def take(self, jobs: Sequence[Job], reader: sqlite3.Connection) -> tuple[dict[str, Job], list[Job]]:
        """Decide, in order, which new jobs take their window: the held ones by id (with the job holding their
        window), and the jobs that took one (to `settle` once their insert is answered)."""
        held: dict[str, Job] = {}
        took: list[Job] = []
        for job in jobs:
            if job.unique is None:
                continue
            self._forget_ended(job.created_at)
            holder = self.open.get(job.unique)
            if holder is not None and holder[0] != job.id and holder[1] > job.created_at:
                first = self.accepting.get(holder[0]) or _job(reader, holder[0])
                if first is not None:
                    held[job.id] = first
                    continue
            until = job.unique_until or job.created_at
            self.open[job.unique] = (job.id, until)
            heapq.heappush(self._ends, (until, job.unique))
            self.accepting[job.id] = job
            took.append(job)
        return held, took

    def settle(self, took: list[Job], stored: set[str]) -> None:
        """Their insert was answered: the windows of the jobs `stored` stay, the others go (the write failed, or
        the id was known already: the answer is that job, which took no window)."""
        for job in took:
            self.accepting.pop(job.id, None)
            if job.id not in stored and job.unique is not None and self.open.get(job.unique, ("",))[0] == job.id:
                del self.open[job.unique]

    def _forget_ended(self, now: float) -> None:
        while self._ends and self._ends[0][0] <= now:
            until, key = heapq.heappop(self._ends)
            if self.open.get(key, ("", 0.0))[1] == until:
                del self.open[key]


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

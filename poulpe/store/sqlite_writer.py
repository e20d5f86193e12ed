"""The SQLite store's writer thread: group commit, with runs of writes folded into multi-row statements.

Every write goes through this one thread. It takes all the writes waiting at that moment, applies them in one
transaction and commits once, so a hundred concurrent submissions cost one fsync, not a hundred. Consecutive
inserts (and consecutive updates) become one multi-row statement: one `sqlite3_step`, so the thread gives up and
takes back the GIL once per run instead of once per row (under a busy event loop, taking it back costs up to
the interpreter's switch interval each time).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
import operator
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from poulpe.errors import StoreUnavailable
from poulpe.job import Job, Method, Status, decode_job, encode_job
from poulpe.store import sqlite_batches
from poulpe.store.sqlite_files import connect, for_writing
from poulpe.store.sqlite_rows import ROWS_PER_STATEMENT, Row, execute_rows, in_id_order

log = logging.getLogger(__name__)
MAX_BATCH = 2000
_DAY = (
    "INSERT INTO days VALUES (?, ?, ?) ON CONFLICT (day) DO UPDATE"
    " SET succeeded = succeeded + excluded.succeeded, failed = failed + excluded.failed"
)
# How long a `save_soon` state (the `running` mark) waits before it is written. Most attempts end sooner: their
# outcome's write replaces the mark, so a job costs two row writes instead of three (docs/design.md, "Order").
SOON_DELAY = 0.25
# While outcomes flow, a batch of outcomes only (under LINGER_ROWS rows) waits LINGER seconds for more before it
# commits: fuller commits cost less CPU per job (docs/design.md, "Durability").
LINGER = 0.002
LINGER_ROWS = 256
# How long the event loop waits, at an early hand-over (`Writer.hand_early`), for the idle writer to take the GIL.
TAKE_WAIT = 0.001


_TEXT: dict[Status | Method, str] = {member: member.value for member in (*Status, *Method)}  # .value: 3x the cost


def row_of(job: Job) -> Row:
    status, method = _TEXT[job.status], _TEXT[job.method]
    return (job.id, job.seq, status, method, job.name, job.run_at, job.finished_at, encode_job(job))


@functools.lru_cache(maxsize=4096)
def _utc_day(day_number: int) -> str:
    return (dt.date(1970, 1, 1) + dt.timedelta(days=day_number)).isoformat()


class Insert:
    """New jobs to store; answers (job, duplicate) for each."""

    __slots__ = ("ascending", "jobs", "rows")

    def __init__(self, jobs: Sequence[Job]) -> None:
        self.jobs = jobs
        self.rows = [row_of(job) for job in jobs]
        # Whether the ids ascend (then the rows may be merged by id with other inserts: sqlite_rows.in_id_order),
        # asked here, on the event loop, rather than by the writer thread, the busier of the two under batched intake.
        if len(jobs) < 2:  # a lone job (single-job intake, every request): nothing to compare
            self.ascending = True
        else:
            ids = [job.id for job in jobs]
            self.ascending = all(map(operator.lt, ids, ids[1:]))


class Update:
    """A job's new state. A final state also counts the job in its UTC day's totals."""

    __slots__ = ("batch", "day_column", "row")

    def __init__(self, job: Job) -> None:
        self.row = row_of(job)
        self.batch = job.batch
        self.day_column: tuple[str, str] | None = None
        if job.finished_at is not None and job.status in (Status.SUCCEEDED, Status.DEAD):
            column = "succeeded" if job.status is Status.SUCCEEDED else "failed"
            self.day_column = (_utc_day(int(job.finished_at // 86400)), column)


class Updates:
    """Several jobs' new states that share one answer (the outcomes decided in one loop iteration): one future for
    the group instead of one per job. Folded with the updates around it into the same statement."""

    __slots__ = ("updates",)

    def __init__(self, jobs: Sequence[Job]) -> None:
        self.updates = [Update(job) for job in jobs]


class Final:
    """A final job's state and its children (SPEC 10.3): one op, so the writer applies both in one transaction.
    Answers (child, duplicate) for each child."""

    __slots__ = ("insert", "update")

    def __init__(self, job: Job, children: Sequence[Job]) -> None:
        self.update, self.insert = Update(job), Insert(children)

    def __call__(self, conn: sqlite3.Connection) -> list[tuple[Job, bool]]:
        update_run(conn, [self.update])
        return insert_run(conn, [self.insert])[0]


Op = Insert | Update | Updates | Callable[[sqlite3.Connection], Any]


def _kind(op: Op) -> type | None:
    """Which ops fold into one statement together: inserts with inserts, updates (single or grouped) with updates."""
    if isinstance(op, Insert):
        return Insert
    if isinstance(op, Update | Updates):
        return Update
    return None


def insert_run(conn: sqlite3.Connection, inserts: list[Insert]) -> list[list[tuple[Job, bool]]]:
    rows = in_id_order([insert.rows for insert in inserts], [insert.ascending for insert in inserts])
    if execute_rows(conn, rows, upsert=False) == len(rows):
        return [[(job, False) for job in insert.jobs] for insert in inserts]
    # Some ids were known. A stored row carrying this job's acceptance number is the one just written.
    ids = list({row[0] for row in rows})
    stored: dict[str, tuple[int, bytes]] = {}
    for start in range(0, len(ids), ROWS_PER_STATEMENT):
        chunk = ids[start : start + ROWS_PER_STATEMENT]
        marks = ",".join("?" * len(chunk))
        for job_id, seq, data in conn.execute(f"SELECT id, seq, data FROM jobs WHERE id IN ({marks})", chunk):
            stored[job_id] = (seq, data)
    answers = []
    for insert in inserts:
        mine = []
        for job in insert.jobs:
            seq, data = stored[job.id]
            mine.append((job, False) if seq == job.seq else (decode_job(data), True))
        answers.append(mine)
    return answers


def update_run(conn: sqlite3.Connection, updates: list[Update]) -> list[None]:
    before = sqlite_batches.statuses_before(conn, updates) if any(u.batch for u in updates) else None
    execute_rows(conn, [update.row for update in updates], upsert=True)  # a repeated id: the last row wins
    if before is not None:  # the counters of batches (SPEC 10.3) move in the same transaction
        sqlite_batches.count(conn, updates, before)
    days: dict[str, list[int]] = {}
    for update in updates:
        if update.day_column is not None:
            day, column = update.day_column
            days.setdefault(day, [0, 0])[column == "failed"] += 1
    for day, (succeeded, failed) in days.items():  # one statement a day: the thread takes the GIL back once
        conn.execute(_DAY, (day, succeeded, failed))
    return [None] * len(updates)


class Soon:
    """States to write SOON_DELAY (up to a quarter more) after each was marked, unless a newer write of the same job
    comes first (`drop`).

    While marks wait, a tick every quarter of SOON_DELAY writes those marked five ticks ago or earlier: each mark
    waits its own delay (an attempt that begins just before a tick still has its whole delay to end, and its
    outcome to replace the mark), with no clock read per mark."""

    STEPS = 4

    def __init__(self, write: Callable[[Job], object]) -> None:
        self.write = write
        # id -> (job, its status and attempts when marked, the tick it was marked in); in the order marked
        self._jobs: dict[str, tuple[Job, Status, int, int]] = {}
        self._ticks = 0
        self._ticking = False

    def add(self, job: Job) -> None:
        self._jobs.pop(job.id, None)  # marked again: it goes last, with its new tick
        self._jobs[job.id] = (job, job.status, job.attempts, self._ticks)
        if not self._ticking:
            self._ticking = True
            asyncio.get_running_loop().call_later(SOON_DELAY / self.STEPS, self._tick)

    def drop(self, *job_ids: str) -> None:
        for job_id in job_ids:
            self._jobs.pop(job_id, None)

    def _tick(self) -> None:
        self._ticks += 1
        due = self._ticks - self.STEPS - 1
        while self._jobs:
            job_id, (job, status, attempts, tick) = next(iter(self._jobs.items()))
            if tick > due:
                break
            del self._jobs[job_id]
            self._write_if_current(job, status, attempts)
        if self._jobs:
            asyncio.get_running_loop().call_later(SOON_DELAY / self.STEPS, self._tick)
        else:
            self._ticking = False

    def flush(self) -> None:
        """Write every state still waiting (the store closes)."""
        jobs, self._jobs = self._jobs, {}
        for job, status, attempts, _ in jobs.values():
            self._write_if_current(job, status, attempts)

    def _write_if_current(self, job: Job, status: Status, attempts: int) -> None:
        """A job whose status or attempt moved on since it was marked is left out: whoever moved it saves it (and a
        final state must not be written here, before its dead letter or its day's count)."""
        if job.status is status and job.attempts == attempts:
            with contextlib.suppress(StoreUnavailable):  # closed meanwhile: recovery runs the job again
                self.write(job)


class Writer(threading.Thread):
    """Applies queued writes in batches: one transaction, one commit, then wakes every waiter at once."""

    def __init__(self, path: Path, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(name="poulpe-sqlite-writer", daemon=True)
        self.conn = for_writing(connect(path))
        self.loop = loop
        self.fault: str | None = None  # why the last batch failed (a full disk), None once a batch commits again
        self.down = False  # its loop ended (stopped, or an error): cheaper to ask than Thread.is_alive, a lock each
        self.lingering = False  # waiting for more outcomes (`_linger`): `wake` ends the wait
        self.wake = threading.Event()
        self.idle = False  # waiting for writes with none queued: an early hand-over starts a commit at once
        self.took = threading.Event()  # set once a woken writer holds the GIL (`hand_early`)
        self.batches = 0  # transactions committed (each one fsync), and the job rows they wrote: what a job costs
        self.rows = 0
        # Each item: the writes of one event-loop iteration, in the order issued; None stops the thread.
        self.ops: queue.SimpleQueue[list[tuple[Op, asyncio.Future[Any] | None]] | None] = queue.SimpleQueue()

    def run(self) -> None:
        try:
            self._loop()
        finally:
            self.down = True

    def _loop(self) -> None:
        stopping = False
        while not stopping:
            flowing = not self.ops.empty()  # writes came while the last batch was applied
            self.idle = not flowing
            first = self.ops.get()
            self.idle = False
            self.took.set()
            batch: list[tuple[Op, asyncio.Future[Any] | None]] = [] if first is None else list(first)
            stopping = first is None or self._drain(batch)[0]
            if flowing and not stopping and lingers(batch):
                stopping = self._linger(batch)
            if batch:
                self._apply(batch)
        self.conn.close()

    def hand(self, writes: list[tuple[Op, asyncio.Future[Any] | None]]) -> None:
        """Writes of one loop iteration. While the writer waits for more outcomes, only a write that answers a
        request wakes it (waking it for each outcome would cost a GIL hand-off each)."""
        self.ops.put(writes)
        if self.lingering and not lingers(writes):
            self.wake.set()

    def hand_early(self, writes: list[tuple[Op, asyncio.Future[Any] | None]]) -> None:
        """Writes handed over before the loop's iteration ends, to the idle writer: it commits them while the loop
        works on the rest. A woken thread must take the GIL, which a busy loop gives up only when forced (after the
        switch interval, 0.5 ms); the loop waits for it here, a few tens of µs, so the commit starts now."""
        self.took.clear()
        self.hand(writes)
        self.took.wait(TAKE_WAIT)

    def stop(self) -> None:
        """The writer applies what was handed over, then stops."""
        self.ops.put(None)
        self.wake.set()

    def _linger(self, batch: list[tuple[Op, asyncio.Future[Any] | None]]) -> bool:
        """Wait up to LINGER for more outcomes, so that a commit (its fsync, the pages each commit writes again) is
        shared by more jobs; a write that answers a request ends the wait. True when the store is closing."""
        self.wake.clear()
        self.lingering = True  # from here on, `hand` sets `wake` for a write that answers a request
        try:
            closing, answers = self._drain(batch)
            if closing or answers or sum(_rows(op) for op, _ in batch) >= LINGER_ROWS:
                return closing
            self.wake.wait(LINGER)
            return self._drain(batch)[0]
        finally:
            self.lingering = False

    def _drain(self, batch: list[tuple[Op, asyncio.Future[Any] | None]]) -> tuple[bool, bool]:
        """Moves the writes waiting into `batch`: (the store closes, one of them answers a request)."""
        answers = False
        while len(batch) < MAX_BATCH and not self.ops.empty():
            item = self.ops.get_nowait()
            if item is None:
                return True, answers
            batch.extend(item)
            answers = answers or not lingers(item)
        return False, answers

    def _apply(self, batch: list[tuple[Op, asyncio.Future[Any] | None]]) -> None:
        ops = [op for op, _ in batch]
        self.batches += 1
        self.rows += sum(_rows(op) for op in ops)
        results: list[Any] = []
        inserts = [op for op in ops if isinstance(op, Insert)]
        if len(inserts) == len(ops) and sum(len(op.rows) for op in inserts) <= ROWS_PER_STATEMENT:
            # One statement: SQLite commits it on its own (autocommit), so the thread leaves and re-takes the
            # GIL once for the whole write instead of three times (BEGIN, INSERT, COMMIT).
            try:
                results = insert_run(self.conn, inserts)
                self.fault = None
            except sqlite3.Error as exc:
                results = self._failed(batch, exc)
            self._settle_soon(batch, results)
            return
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            start = 0
            while start < len(ops):
                kind = _kind(ops[start])
                end = start + 1
                if kind is not None:
                    while end < len(ops) and _kind(ops[end]) is kind:
                        end += 1
                results.extend(self._run(ops[start:end]))
                start = end
            self.conn.execute("COMMIT")
            self.fault = None
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")
            results = self._failed(batch, exc)
        self._settle_soon(batch, results)

    def _failed(self, batch: list[tuple[Op, asyncio.Future[Any] | None]], exc: sqlite3.Error) -> list[Any]:
        if self.fault is None:  # once per fault, not once per write: a full disk fails every write
            log.error("store write failed: %s", exc)
        self.fault = f"the store cannot take writes: {exc}"
        return [StoreUnavailable(f"the store could not write: {exc}")] * len(batch)

    def _settle_soon(self, batch: list[tuple[Op, asyncio.Future[Any] | None]], results: list[Any]) -> None:
        # RuntimeError: the loop is gone, nobody waits any more; the data is committed all the same
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(_settle, [fut for _, fut in batch], results)

    def _run(self, run: list[Op]) -> list[Any]:
        """A run of ops of one kind: inserts and updates folded together, anything else one by one."""
        first = run[0]
        if isinstance(first, Insert):
            return insert_run(self.conn, run)  # type: ignore[arg-type]
        if isinstance(first, Update | Updates):
            update_run(self.conn, _flat(run))
            return [None] * len(run)  # one answer per op: an Updates group has one future
        assert callable(first)
        return [first(self.conn)]


def lingers(batch: list[tuple[Op, asyncio.Future[Any] | None]]) -> bool:
    """Grouped saves (`Updates`: the finish step's outcomes, a bulk retry's jobs) and unawaited states (`running`
    marks) only: every other write answers a request or a waiting caller, and is committed as soon as it comes."""
    return all(isinstance(op, Updates) or (fut is None and isinstance(op, Update)) for op, fut in batch)


def _flat(run: list[Op]) -> list[Update]:
    updates: list[Update] = []
    for op in run:
        if isinstance(op, Updates):
            updates.extend(op.updates)
        elif isinstance(op, Update):
            updates.append(op)
    return updates


def _rows(op: Op) -> int:
    """The job rows an op writes (Writer.rows)."""
    if isinstance(op, Insert):
        return len(op.rows)
    if isinstance(op, Updates):
        return len(op.updates)
    return 1 if isinstance(op, Update) else 0


def _settle(futures: list[asyncio.Future[Any] | None], results: list[Any]) -> None:
    for fut, result in zip(futures, results, strict=True):
        if fut is None or fut.done():
            if fut is None and isinstance(result, Exception):
                log.error("background store write failed: %s", result)
            continue
        if isinstance(result, Exception):
            fut.set_exception(result)
        else:
            fut.set_result(result)

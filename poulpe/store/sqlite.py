"""The embedded store: one SQLite file, WAL, synchronous=FULL, and group commit.

Every write goes through one writer thread. It takes all the writes waiting at that moment, applies them in one
transaction and commits once, so a hundred concurrent submissions cost one fsync, not a hundred. Point reads run
on the event loop's own connection (WAL readers never wait for the writer); scans run in a thread.

Rows are appended in acceptance order, so the rowid is that order: listing newest first needs no index of its own,
and an index on status alone (SQLite keeps the rowid in every index) serves "newest dead jobs". Fewer indexes,
cheaper inserts.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from poulpe.errors import StoreUnavailable
from poulpe.job import FINAL, Job, Status, decode_job, encode_job
from poulpe.store.base import Page, Pending, Store

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_BATCH = 2000
_STATUSES = tuple(s.value for s in Status)
_NOT_FINAL = tuple(s.value for s in Status if s not in FINAL)

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    status TEXT NOT NULL,
    method TEXT NOT NULL,
    name TEXT NOT NULL,
    run_at REAL NOT NULL,
    finished_at REAL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status);
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS days (day TEXT PRIMARY KEY, succeeded INTEGER NOT NULL, failed INTEGER NOT NULL);
"""


_INSERT = (
    "INSERT INTO jobs (id, seq, status, method, name, run_at, finished_at, data)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
)


class _Insert:
    """New jobs to store. Consecutive inserts in a batch run as one executemany (the common case under load)."""

    __slots__ = ("jobs", "rows")

    def __init__(self, jobs: Sequence[Job]) -> None:
        self.jobs = jobs
        self.rows = [_row(job) for job in jobs]


def _insert_run(conn: sqlite3.Connection, inserts: list[_Insert]) -> list[list[tuple[Job, bool]]]:
    """Store every job of consecutive inserts; for each insert, (job, duplicate) per job."""
    rows = [row for insert in inserts for row in insert.rows]
    if conn.executemany(_INSERT, rows).rowcount == len(rows):
        return [[(job, False) for job in insert.jobs] for insert in inserts]
    # Some ids were known. A stored row carrying this job's acceptance number is the one just written.
    ids = list({row[0] for row in rows})
    stored: dict[str, tuple[int, bytes]] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for job_id, seq, data in conn.execute(f"SELECT id, seq, data FROM jobs WHERE id IN ({marks})", chunk):
            stored[job_id] = (seq, data)
    out = []
    for insert in inserts:
        answers = []
        for job in insert.jobs:
            seq, data = stored[job.id]
            answers.append((job, False) if seq == job.seq else (decode_job(data), True))
        out.append(answers)
    return out


Op = Callable[[sqlite3.Connection], Any] | _Insert


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def _row(job: Job) -> tuple[Any, ...]:
    return (job.id, job.seq, job.status.value, job.method.value, job.name, job.run_at, job.finished_at, encode_job(job))


def _utc_day(when: float) -> str:
    return dt.datetime.fromtimestamp(when, dt.UTC).strftime("%Y-%m-%d")


class _Writer(threading.Thread):
    """Applies queued writes in batches: one transaction, one commit, then wakes every waiter at once."""

    def __init__(self, path: Path, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(name="poulpe-sqlite-writer", daemon=True)
        self.conn = _connect(path)
        self.loop = loop
        self.ops: queue.SimpleQueue[tuple[Op, asyncio.Future[Any] | None] | None] = queue.SimpleQueue()

    def run(self) -> None:
        stopping = False
        while not stopping:
            first = self.ops.get()
            batch = []
            if first is None:
                stopping = True
            else:
                batch.append(first)
            while len(batch) < MAX_BATCH:
                try:
                    item = self.ops.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            if batch:
                self._apply(batch)
        self.conn.close()

    def _apply(self, batch: list[tuple[Op, asyncio.Future[Any] | None]]) -> None:
        results: list[Any] = []
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            i = 0
            while i < len(batch):
                op = batch[i][0]
                if isinstance(op, _Insert):
                    j = i
                    while j < len(batch) and isinstance(batch[j][0], _Insert):
                        j += 1
                    results.extend(_insert_run(self.conn, [o for o, _ in batch[i:j]]))  # type: ignore[misc]
                    i = j
                    continue
                try:
                    results.append(op(self.conn))
                except sqlite3.IntegrityError as exc:
                    results.append(exc)
                i += 1
            self.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            log.error("store write failed: %s", exc)
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")
            results = [StoreUnavailable(f"the store could not write: {exc}")] * len(batch)
        # RuntimeError: the loop is gone, nobody waits any more; the data is committed all the same
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(_settle, [fut for _, fut in batch], results)


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


class SqliteStore(Store):
    kind = "sqlite"

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._writer: _Writer | None = None
        self._reader: sqlite3.Connection | None = None

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = _connect(self.path)
        conn.executescript(SCHEMA)
        conn.close()
        self._writer = _Writer(self.path, asyncio.get_running_loop())
        self._writer.start()
        self._reader = _connect(self.path)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.ops.put(None)
            await asyncio.to_thread(self._writer.join)
            self._writer = None
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def _submit(self, op: Op, *, wait: bool = True) -> asyncio.Future[Any] | None:
        if self._writer is None or not self._writer.is_alive():
            raise StoreUnavailable("the store is closed")
        fut = asyncio.get_running_loop().create_future() if wait else None
        self._writer.ops.put((op, fut))
        return fut

    async def _write(self, op: Op) -> Any:
        fut = self._submit(op)
        assert fut is not None
        return await fut

    @property
    def reader(self) -> sqlite3.Connection:
        if self._reader is None:
            raise StoreUnavailable("the store is closed")
        return self._reader

    async def _scan(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            conn = _connect(self.path)
            try:
                return fn(conn)
            finally:
                conn.close()

        return await asyncio.to_thread(run)

    async def ping(self) -> bool:
        try:
            self.reader.execute("SELECT 1").fetchone()
        except (sqlite3.Error, StoreUnavailable):
            return False
        return self._writer is not None and self._writer.is_alive()

    async def add(self, jobs: Sequence[Job]) -> list[tuple[Job, bool]]:
        result: list[tuple[Job, bool]] = await self._write(_Insert(jobs))
        return result

    def _update_op(self, job: Job) -> Op:
        row = _row(job)
        day = _utc_day(job.finished_at) if job.final and job.finished_at is not None else None
        column = "succeeded" if job.status is Status.SUCCEEDED else "failed" if job.status is Status.DEAD else None

        def update(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO jobs (id, seq, status, method, name, run_at, finished_at, data)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
                " status = excluded.status, run_at = excluded.run_at, finished_at = excluded.finished_at,"
                " seq = excluded.seq, data = excluded.data",
                row,
            )
            if day is not None and column is not None:
                conn.execute("INSERT INTO days VALUES (?, 0, 0) ON CONFLICT (day) DO NOTHING", (day,))
                conn.execute(f"UPDATE days SET {column} = {column} + 1 WHERE day = ?", (day,))

        return update

    async def save(self, job: Job) -> None:
        await self._write(self._update_op(job))

    def save_soon(self, job: Job) -> None:
        self._submit(self._update_op(job), wait=False)

    async def get(self, job_id: str) -> Job | None:
        row = self.reader.execute("SELECT data FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return decode_job(row[0]) if row else None

    async def get_many(self, ids: Sequence[str]) -> list[Job]:
        out: list[Job] = []
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = self.reader.execute(f"SELECT data FROM jobs WHERE id IN ({marks})", chunk).fetchall()
            out.extend(decode_job(r[0]) for r in rows)
        return out

    async def delete(self, job_id: str) -> bool:
        def remove(conn: sqlite3.Connection) -> bool:
            return conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,)).rowcount == 1

        deleted: bool = await self._write(remove)
        return deleted

    async def pending(self) -> list[Pending]:
        def scan(conn: sqlite3.Connection) -> list[Pending]:
            marks = ",".join("?" * len(_NOT_FINAL))
            rows = conn.execute(f"SELECT run_at, seq, id, status FROM jobs WHERE status IN ({marks})", _NOT_FINAL)
            return [Pending(r[0], r[1], r[2], Status(r[3])) for r in rows]

        return await self._scan(scan)

    async def list_jobs(
        self,
        *,
        status: Status | None = None,
        method: str | None = None,
        name: str | None = None,
        page: int = 1,
        size: int = 50,
    ) -> Page:
        where, args = [], []
        for column, value in (("status", status.value if status else None), ("method", method), ("name", name)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        clause = f"WHERE {' AND '.join(where)}" if where else ""

        def scan(conn: sqlite3.Connection) -> Page:
            total = conn.execute(f"SELECT count(*) FROM jobs {clause}", args).fetchone()[0]
            rows = conn.execute(
                f"SELECT data FROM jobs {clause} ORDER BY rowid DESC LIMIT ? OFFSET ?", [*args, size, (page - 1) * size]
            ).fetchall()
            return Page([decode_job(r[0]) for r in rows], total)

        return await self._scan(scan)

    async def counts(self) -> dict[str, int]:
        def scan(conn: sqlite3.Connection) -> dict[str, int]:
            found = dict(conn.execute("SELECT status, count(*) FROM jobs GROUP BY status").fetchall())
            return {s: int(found.get(s, 0)) for s in _STATUSES}

        return await self._scan(scan)

    async def day_counts(self, day: str) -> dict[str, int]:
        row = self.reader.execute("SELECT succeeded, failed FROM days WHERE day = ?", (day,)).fetchone()
        return {"succeeded": row[0] if row else 0, "failed": row[1] if row else 0}

    async def purge(self, finished_before: float) -> int:
        final = tuple(s.value for s in FINAL)

        def remove(conn: sqlite3.Connection) -> int:
            marks = ",".join("?" * len(final))
            return conn.execute(
                f"DELETE FROM jobs WHERE finished_at < ? AND status IN ({marks})", (finished_before, *final)
            ).rowcount

        purged: int = await self._write(remove)
        return purged

    async def max_seq(self) -> int:
        row = self.reader.execute("SELECT max(seq) FROM jobs").fetchone()
        return int(row[0] or 0)

"""The embedded store: one SQLite file, WAL, synchronous=FULL, and group commit (see sqlite_writer.py).

Point reads run on the event loop's own connection (WAL readers never wait for the writer); scans run in a thread
(the reads: sqlite_reads.py).

Rows are appended in acceptance order, so the rowid is that order: listing newest first needs no index of its own,
and an index on status alone (SQLite keeps the rowid in every index) serves "newest dead jobs". Fewer indexes,
cheaper inserts.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from poulpe.errors import StoreUnavailable
from poulpe.job import FINAL, CallbackDelivery, Job, Status, decode_job, encode_job
from poulpe.keys import KeyLimits
from poulpe.store import sqlite_flows, sqlite_writer
from poulpe.store import sqlite_keys as keys
from poulpe.store import sqlite_windows as windows
from poulpe.store.base import Store
from poulpe.store.sqlite_files import connect, disk_fault, probe
from poulpe.store.sqlite_reads import SqliteReads
from poulpe.store.sqlite_writer import Final, Insert, Op, Soon, Update, Writer, update_run

log = logging.getLogger(__name__)
T = TypeVar("T")
# Awaited writes issued in one loop iteration after which an idle writer gets them without waiting for its end.
EARLY_HAND_OVER = 32
# The same for the job rows of awaited inserts: a batch of jobs is one write, and a few batches are a commit's work.
EARLY_HAND_OVER_ROWS = 1000

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
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs (name, run_at, seq)
    WHERE method = 'QUEUE' AND status IN ('scheduled', 'queued', 'retrying');
CREATE TABLE IF NOT EXISTS days (day TEXT PRIMARY KEY, succeeded INTEGER NOT NULL, failed INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS keys (key TEXT PRIMARY KEY, limits BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS flags (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class SqliteStore(SqliteReads, sqlite_flows.SqliteFlows, Store):
    kind = "sqlite"

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._writer: Writer | None = None
        self._pending: list[tuple[Op, asyncio.Future[Any] | None]] = []
        self._awaited = 0  # of the pending writes, those a caller waits for
        self._awaited_rows = 0  # and the job rows those of them that insert jobs hold
        self._soon = Soon(lambda job: self._submit(Update(job), wait=False))  # `running` marks, written late
        self._reader: sqlite3.Connection | None = None
        self._open_fault: str | None = None
        self._reopening: asyncio.Task[None] | None = None
        self.windows = windows.Windows()  # unique and debounce windows

    async def open(self) -> None:
        """Open the file. A full or failing disk does not stop poulpe: the store answers 503 and opens once it can
        (SQLite cannot even read a WAL database when its shared-memory file cannot be made on a full disk)."""
        try:
            self._open_now()
        except (sqlite3.Error, OSError) as exc:
            if not disk_fault(exc):
                raise
            self._open_fault = f"the store cannot take writes: it could not be opened ({exc})"
            log.error("%s; poulpe answers 503 until it can", self._open_fault)
            self._reopening = asyncio.create_task(self._reopen_forever(), name="poulpe-sqlite-reopen")

    def _open_now(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = connect(self.path)
        try:
            conn.executescript(SCHEMA + windows.SCHEMA + sqlite_flows.SCHEMA)
        finally:
            conn.close()
        reader = connect(self.path)
        try:
            writer = Writer(self.path, asyncio.get_running_loop())
        except BaseException:
            reader.close()
            raise
        writer.start()
        self.windows.load(reader, time.time())
        self._writer, self._reader, self._open_fault = writer, reader, None

    async def _reopen_forever(self) -> None:
        delay, since = 0.2, time.monotonic()
        while self._writer is None:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
            try:
                self._open_now()
            except (sqlite3.Error, OSError) as exc:
                self._open_fault = f"the store cannot take writes: it could not be opened ({exc})"
        log.warning("the store opened after %.1f s", time.monotonic() - since)

    def write_fault(self) -> str | None:
        if self._open_fault is not None:
            return self._open_fault
        return self._writer.fault if self._writer is not None else None

    async def close(self) -> None:
        if self._reopening is not None:
            self._reopening.cancel()
            self._reopening = None
        if self._writer is not None:
            self._soon.flush()
            self._hand_over()  # writes issued in this iteration go before the stop
            self._writer.stop()
            await asyncio.to_thread(self._writer.join)
            self._writer = None
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def _submit(self, op: Op, *, wait: bool = True) -> asyncio.Future[Any] | None:
        if self._writer is None or self._writer.down:
            raise StoreUnavailable(self._open_fault or "the store is closed")
        loop = asyncio.get_running_loop()
        fut = loop.create_future() if wait else None
        if not self._pending:
            loop.call_soon(self._hand_over)
        self._pending.append((op, fut))
        if fut is not None:
            self._awaited += 1
            if isinstance(op, Insert):
                self._awaited_rows += len(op.rows)
            if (self._awaited >= EARLY_HAND_OVER or self._awaited_rows >= EARLY_HAND_OVER_ROWS) and self._writer.idle:
                pending, self._pending, self._awaited, self._awaited_rows = self._pending, [], 0, 0
                self._writer.hand_early(pending)
        return fut

    def _hand_over(self) -> None:
        """Writes issued during one loop iteration go to the writer together: it wakes (and takes the GIL) once.

        Only when many requests' writes come in one iteration (a burst of requests read together) and the writer is
        idle do the first EARLY_HAND_OVER go at once (or the first awaited inserts holding EARLY_HAND_OVER_ROWS jobs,
        a few batches): otherwise the writer would wait for the whole burst and the loop, its burst handed over, for
        the commit, each idle in turn (docs/design.md, "A burst reaches an idle writer early")."""
        pending, self._pending, self._awaited, self._awaited_rows = self._pending, [], 0, 0
        if pending and self._writer is not None:
            self._writer.hand(pending)

    async def _write(self, op: Op) -> Any:
        fut = self._submit(op)
        assert fut is not None
        return await fut

    @property
    def reader(self) -> sqlite3.Connection:
        if self._reader is None:
            raise StoreUnavailable(self._open_fault or "the store is closed")
        return self._reader

    async def _scan(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            conn = connect(self.path)
            try:
                return fn(conn)
            finally:
                conn.close()

        if self._writer is None:
            raise StoreUnavailable(self._open_fault or "the store is closed")
        try:
            return await asyncio.to_thread(run)
        except sqlite3.Error as exc:
            if not disk_fault(exc):
                raise
            raise StoreUnavailable(f"the store could not read: {exc}") from None

    async def ping(self) -> bool:
        """True when the store reads and takes writes. After a failed write (a full disk), a small write is tried
        each time, so /health turns 200 as soon as writes pass again, without waiting for a job to write."""
        with self._timed("ping"):
            try:
                self.reader.execute("SELECT 1").fetchone()
            except (sqlite3.Error, StoreUnavailable):
                return False
            if self._writer is None or not self._writer.is_alive():
                return False
            if self._writer.fault is None:
                return True
            try:
                async with asyncio.timeout(5):
                    await self._write(probe)
            except (StoreUnavailable, TimeoutError):
                return False
            return True

    async def add(self, jobs: Sequence[Job]) -> list[tuple[Job, bool]]:
        with self._timed("add"):
            for job in jobs:
                if job.unique is not None:  # unique windows: sqlite_windows.py
                    return await self.windows.unique.add(jobs, self.reader, self._write)
            return await self._write(Insert(jobs))  # type: ignore[no-any-return]

    async def save(self, job: Job) -> None:
        with self._timed("save"):
            self._soon.drop(job.id)  # this write carries the newer state
            await self._write(Update(job))

    async def save_many(self, jobs: Sequence[Job]) -> list[BaseException | None]:
        with self._timed("save_many"):
            if self._writer is None or self._writer.down:  # before any is issued: none is written twice
                raise StoreUnavailable(self._open_fault or "the store is closed")
            self._soon.drop(*(job.id for job in jobs))
            try:
                await self._write(sqlite_writer.Updates(jobs))  # one op, one future: a batch commits or fails whole
            except Exception as exc:  # each job's answer, as its own `save` would have raised it
                return [exc] * len(jobs)
            return [None] * len(jobs)

    def save_soon(self, job: Job) -> None:
        """Written after SOON_DELAY unless a `save` of the job comes first: that one replaces it (sqlite_writer.py)."""
        if self._writer is None or self._writer.down:
            raise StoreUnavailable(self._open_fault or "the store is closed")
        self._soon.add(job)

    async def delete(self, job_id: str) -> bool:
        with self._timed("delete"):

            def remove(conn: sqlite3.Connection) -> bool:
                return conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,)).rowcount == 1

            self._soon.drop(job_id)
            return bool(await self._write(remove))

    async def debounce(self, job: Job, replace: Callable[[Job], Job | None]) -> tuple[Job, bool]:
        with self._timed("debounce"):
            return await self.windows.debounce.submit(job, replace, self.reader, self._write)

    async def purge(self, finished_before: float) -> int:
        with self._timed("purge"):
            final = tuple(s.value for s in FINAL)

            def remove(conn: sqlite3.Connection) -> int:
                marks = ",".join("?" * len(final))
                return conn.execute(
                    f"DELETE FROM jobs WHERE finished_at < ? AND status IN ({marks})", (finished_before, *final)
                ).rowcount

            return int(await self._write(remove))

    # --- QUEUE leases: each one callable run by the writer thread, so no other write comes between its read and
    # its write. The partial index jobs_queue holds only waiting QUEUE jobs, so other jobs pay nothing for it;
    # running QUEUE jobs (the leased ones) are found through the status index.
    async def lease_queue(self, kind: str, n: int, holder: str, until: float, now: float) -> list[Job]:
        with self._timed("lease_queue"):

            def take(conn: sqlite3.Connection) -> list[Job]:
                rows = conn.execute(
                    "SELECT data FROM jobs WHERE method = 'QUEUE' AND status IN ('scheduled', 'queued', 'retrying')"
                    " AND name = ? AND run_at <= ? ORDER BY run_at, seq LIMIT ?",
                    (kind, now, n),
                ).fetchall()
                jobs = [decode_job(row[0]) for row in rows]
                for job in jobs:
                    job.begin_attempt(None, holder, now)
                    job.lease_holder, job.lease_until = holder, until
                if jobs:
                    update_run(conn, [Update(job) for job in jobs])
                return jobs

            taken: list[Job] = await self._write(take)
            return taken

    async def save_if_held(self, job: Job, holder: str, children: Sequence[Job] = ()) -> bool:
        with self._timed("save_if_held"):
            self._soon.drop(job.id)
            final = Final(job, children)

            def swap(conn: sqlite3.Connection) -> bool:
                row = conn.execute("SELECT data FROM jobs WHERE id = ?", (job.id,)).fetchone()
                if row is None:
                    return False
                stored = decode_job(row[0])
                if (
                    stored.status is not Status.RUNNING
                    or stored.lease_holder != holder
                    or stored.attempts != job.attempts
                ):
                    return False
                final(conn)  # with the children of a final job (SPEC 10.3), if it has any
                return True

            held: bool = await self._write(swap)
            return held

    async def set_callback_delivery(self, job_id: str, delivery: CallbackDelivery) -> bool:
        with self._timed("set_callback_delivery"):

            def mark(conn: sqlite3.Connection) -> bool:
                row = conn.execute("SELECT data FROM jobs WHERE id = ?", (job_id,)).fetchone()
                if row is None:
                    return False
                job = decode_job(row[0])
                if not job.final:
                    return False
                job.callback_delivery = delivery
                conn.execute("UPDATE jobs SET data = ? WHERE id = ?", (encode_job(job), job_id))
                return True

            return bool(await self._write(mark))

    async def set_key(self, key: str, limits: KeyLimits | None) -> None:
        with self._timed("set_key"):
            await self._write(keys.write_key(key, limits))

    async def set_paused(self, paused: bool) -> None:
        with self._timed("set_paused"):
            await self._write(keys.write_paused(paused))

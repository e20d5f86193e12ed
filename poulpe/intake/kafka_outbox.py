"""The Kafka outbox: ids of jobs taken from Kafka whose result has not reached the response topic yet.

An id is written (durably) before its job is stored and its offset committed, and removed once the broker has
acknowledged the job's result. So a result is never skipped, whatever moment poulpe is killed at: after a restart,
every id still here is either a job that is not final yet (its result goes when it ends) or a final job whose result
is sent again. The file lives beside the --data file (`<data>.kafka.db`).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterable
from pathlib import Path


class Outbox:
    shared = False  # kafka_handover.SharedOutbox: mirrored into a store other processes share

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()
        self.ids: set[str] = set()  # the file's content, mirrored: its size is the back-pressure count

    def __len__(self) -> int:
        return len(self.ids)

    async def open(self) -> set[str]:
        def connect() -> sqlite3.Connection:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("CREATE TABLE IF NOT EXISTS outbox (id TEXT PRIMARY KEY)")
            return conn

        self._conn = await asyncio.to_thread(connect)
        self.ids = {row[0] for row in self._conn.execute("SELECT id FROM outbox")}
        return set(self.ids)

    async def close(self) -> None:
        async with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    async def add(self, ids: Iterable[str]) -> None:
        """Returns once the ids are durable (one transaction for the whole batch)."""
        new = [i for i in dict.fromkeys(ids) if i not in self.ids]
        if new:
            await self._write("INSERT OR IGNORE INTO outbox (id) VALUES (?)", new)
            self.ids.update(new)

    async def remove(self, ids: Iterable[str]) -> None:
        gone = [i for i in dict.fromkeys(ids) if i in self.ids]
        if gone:
            self.ids.difference_update(gone)
            await self._write("DELETE FROM outbox WHERE id = ?", gone)

    async def _write(self, sql: str, ids: list[str]) -> None:
        def run(conn: sqlite3.Connection) -> None:
            with conn:  # one transaction: one fsync for the batch
                conn.execute("BEGIN")
                conn.executemany(sql, [(i,) for i in ids])

        async with self._lock:
            if self._conn is None:
                raise RuntimeError("the Kafka outbox is closed")
            await asyncio.to_thread(run, self._conn)

"""The SQLite store's parts for chains, batches and bulk actions (SPEC 10.3, 10.4): SqliteStore inherits them."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from poulpe.batch_record import Batch
from poulpe.job import Job
from poulpe.store import sqlite_actions, sqlite_batches
from poulpe.store.sqlite_actions import SqliteActions
from poulpe.store.sqlite_batches import add, announced, owed, read
from poulpe.store.sqlite_writer import Final, Insert, insert_run

SCHEMA = sqlite_batches.SCHEMA + sqlite_actions.SCHEMA


class SqliteFlows(SqliteActions):
    """Every one a write of the writer thread, so a read never sees a final job without its children, or a batch
    and its jobs apart."""

    _soon: Any  # sqlite_writer.Soon: the `running` marks written late

    async def _write(self, op: Any) -> Any:
        raise NotImplementedError

    async def save_final(self, job: Job, children: Sequence[Job]) -> list[tuple[Job, bool]]:
        with self._timed("save_final"):
            self._soon.drop(job.id)  # this write carries the newer state
            stored: list[tuple[Job, bool]] = await self._write(Final(job, children))
            return stored

    async def add_batch(self, batch: Batch, jobs: Sequence[Job]) -> Batch | str | None:
        with self._timed("add_batch"):

            def write(conn: sqlite3.Connection) -> Batch | str | None:
                answer, known = add(conn, batch, [job.id for job in jobs])
                if answer == "ok":
                    insert_run(conn, [Insert(jobs)])
                return known  # type: ignore[no-any-return]

            stored: Batch | str | None = await self._write(write)
            return stored

    async def get_batch(self, batch_id: str) -> Batch | None:
        with self._timed("get_batch"):
            batch: Batch | None = await self._write(lambda conn: read(conn, batch_id))
            return batch

    async def owed_batches(self, now: float, lease: float, limit: int = 20) -> list[str]:
        with self._timed("owed_batches"):
            ids: list[str] = await self._write(lambda conn: owed(conn, now, lease, limit))
            return ids

    async def batch_announced(self, batch_id: str) -> None:
        with self._timed("batch_announced"):
            await self._write(lambda conn: announced(conn, batch_id))

"""Bulk actions in the SQLite file (SPEC 10.4): SqliteStore inherits these methods."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from poulpe.action_record import Action, Progress, decode_ids, encode_ids
from poulpe.job import Job, Status, decode_job
from poulpe.store.timing import Timed

SCHEMA = """
CREATE TABLE IF NOT EXISTS actions (
    id TEXT PRIMARY KEY, data BLOB NOT NULL, ids BLOB NOT NULL, progress BLOB NOT NULL, finished INTEGER NOT NULL,
    hold_until REAL NOT NULL
);
"""
_progress = msgspec.json.Decoder(Progress)


class SqliteActions(Timed):
    async def _write(self, op: Any) -> Any:
        raise NotImplementedError

    async def _scan(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        raise NotImplementedError

    async def find_ids(self, status: Status | None, match: Callable[[Job], bool]) -> list[str]:
        with self._timed("find_ids"):

            def scan(conn: sqlite3.Connection) -> list[str]:
                where, args = ("WHERE status = ?", (status.value,)) if status is not None else ("", ())
                rows = conn.execute(f"SELECT data FROM jobs {where} ORDER BY rowid", args)
                return [job.id for job in (decode_job(row[0]) for row in rows) if match(job)]

            found: list[str] = await self._scan(scan)
            return found

    async def add_action(self, action: Action, ids: Sequence[str], hold_until: float) -> None:
        with self._timed("add_action"):
            row = (action.id, msgspec.json.encode(action), encode_ids(list(ids)), b"{}", hold_until)
            await self._write(lambda conn: conn.execute("INSERT INTO actions VALUES (?, ?, ?, ?, 0, ?)", row))

    async def get_action(self, action_id: str) -> Action | None:
        with self._timed("get_action"):

            def read(conn: sqlite3.Connection) -> Action | None:
                row = conn.execute("SELECT data, progress FROM actions WHERE id = ?", (action_id,)).fetchone()
                if row is None:
                    return None
                progress = _progress.decode(row[1])
                action = msgspec.json.decode(row[0], type=Action)
                action.done, action.errors, action.finished_at = progress.done, progress.errors, progress.finished_at
                action.last_error = progress.last_error
                return action

            found: Action | None = await self._write(read)
            return found

    async def action_ids(self, action_id: str) -> list[str]:
        with self._timed("action_ids"):

            def read(conn: sqlite3.Connection) -> list[str]:
                row = conn.execute("SELECT ids FROM actions WHERE id = ?", (action_id,)).fetchone()
                return decode_ids(row[0]) if row else []

            ids: list[str] = await self._write(read)
            return ids

    async def action_progress(self, action_id: str, progress: Progress, hold_until: float) -> None:
        with self._timed("action_progress"):
            args = (msgspec.json.encode(progress), progress.finished_at is not None, hold_until, action_id)
            await self._write(
                lambda conn: conn.execute(
                    "UPDATE actions SET progress = ?, finished = ?, hold_until = ? WHERE id = ?", args
                )
            )

    async def open_actions(self, now: float, hold: float) -> list[str]:
        with self._timed("open_actions"):

            def claim(conn: sqlite3.Connection) -> list[str]:
                rows = conn.execute(
                    "UPDATE actions SET hold_until = ? WHERE finished = 0 AND hold_until <= ? RETURNING id",
                    (now + hold, now),
                )
                return [row[0] for row in rows]

            ids: list[str] = await self._write(claim)
            return ids

"""Batches in the SQLite file (SPEC 10.3): their counters move in the same transaction as each job's final state.

`announce_at` is the batch's completion waiting to be told (its on_complete and callback jobs submitted): set by the
write that brings `pending` to 0, pushed forward while one teller holds it, cleared once told.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any, Protocol

from poulpe.batch_record import Batch, extras, with_extras
from poulpe.job import FINAL


class Update(Protocol):
    """A job's row about to be written (sqlite_writer.Update), and its batch."""

    row: tuple[Any, ...]
    batch: str | None


SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    id TEXT PRIMARY KEY, total INTEGER NOT NULL, pending INTEGER NOT NULL, succeeded INTEGER NOT NULL,
    dead INTEGER NOT NULL, cancelled INTEGER NOT NULL, created_at REAL NOT NULL, finished_at REAL,
    announce_at REAL, data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS batches_owed ON batches (announce_at) WHERE announce_at IS NOT NULL;
"""
_FINAL = {s.value for s in FINAL}
_COLUMNS = "id, total, pending, succeeded, dead, cancelled, created_at, finished_at, data"


def statuses_before(conn: sqlite3.Connection, updates: Sequence[Update]) -> dict[str, str | None]:
    """The stored status of each batch job about to be written (the counters move on its change only)."""
    ids = list({u.row[0] for u in updates if u.batch is not None})
    found: dict[str, str | None] = dict.fromkeys(ids)
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        found.update(conn.execute(f"SELECT id, status FROM jobs WHERE id IN ({','.join('?' * len(chunk))})", chunk))
    return found


def count(conn: sqlite3.Connection, updates: Sequence[Update], before: dict[str, str | None]) -> None:
    """Move the counters of the batches whose jobs became final (or left a final state: retried from the dead)."""
    for update in updates:
        if update.batch is None:
            continue
        job_id, status, finished_at = update.row[0], update.row[2], update.row[6]
        was, before[job_id] = before.get(job_id), status
        if was == status:
            continue
        delta = {"pending": 0, "succeeded": 0, "dead": 0, "cancelled": 0}
        if was in _FINAL:
            delta[str(was)] -= 1
            delta["pending"] += 1
        if status in _FINAL:
            delta[status] += 1
            delta["pending"] -= 1
        if not any(delta.values()):
            continue
        conn.execute(
            "UPDATE batches SET pending = pending + ?, succeeded = succeeded + ?, dead = dead + ?,"
            " cancelled = cancelled + ? WHERE id = ?",
            (*delta.values(), update.batch),
        )
        conn.execute(  # the one write that ends the batch: its completion is owed, once
            "UPDATE batches SET finished_at = ?, announce_at = 0 WHERE id = ? AND pending = 0 AND finished_at IS NULL",
            (finished_at, update.batch),
        )


def add(conn: sqlite3.Connection, batch: Batch, ids: list[str]) -> tuple[str, Any]:
    """Store a batch before its jobs (the caller inserts them): ("known", batch), ("job", id) or ("ok", None)."""
    known = read(conn, batch.id)
    if known is not None:
        return "known", known
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        taken = conn.execute(f"SELECT id FROM jobs WHERE id IN ({','.join('?' * len(chunk))}) LIMIT 1", chunk)
        for (job_id,) in taken:
            return "job", job_id
    conn.execute(
        f"INSERT INTO batches ({_COLUMNS}) VALUES (?, ?, ?, 0, 0, 0, ?, NULL, ?)",
        (batch.id, batch.total, batch.total, batch.created_at, extras(batch)),
    )
    return "ok", None


def read(conn: sqlite3.Connection, batch_id: str) -> Batch | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM batches WHERE id = ?", (batch_id,)).fetchone()
    if row is None:
        return None
    names = ("total", "pending", "succeeded", "dead", "cancelled", "created_at", "finished_at")
    return with_extras(Batch(id=row[0], **dict(zip(names, row[1:8], strict=True))), row[8])


def owed(conn: sqlite3.Connection, now: float, lease: float, limit: int) -> list[str]:
    """Batches whose completion is owed and not held by a teller: held now for `lease` seconds."""
    rows = conn.execute(
        "UPDATE batches SET announce_at = ? WHERE id IN (SELECT id FROM batches WHERE announce_at IS NOT NULL"
        " AND announce_at <= ? LIMIT ?) RETURNING id",
        (now + lease, now, limit),
    ).fetchall()
    return [row[0] for row in rows]


def announced(conn: sqlite3.Connection, batch_id: str) -> None:
    conn.execute("UPDATE batches SET announce_at = NULL WHERE id = ?", (batch_id,))

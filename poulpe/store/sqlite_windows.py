"""The SQLite store's part of bursts and windows (SPEC 10.2): start deadlines found again at a restart, unique
windows and debounce windows. Each function runs on a connection of its own (a scan) or in the writer thread, inside
the batch's one transaction, so what it reads cannot change before it writes."""

from __future__ import annotations

import sqlite3

from poulpe.job import decode_job


def deadlines(conn: sqlite3.Connection) -> list[tuple[float, int, str]]:
    """(deadline, seq, id) of waiting jobs never started; only records that name a deadline are decoded."""
    rows = conn.execute(
        "SELECT data FROM jobs WHERE status IN ('scheduled', 'queued', 'retrying')"
        " AND instr(data, CAST('\"deadline\":' AS BLOB)) > 0"
    )
    jobs = [decode_job(row[0]) for row in rows]
    return [(job.deadline, job.seq, job.id) for job in jobs if job.deadline is not None and not job.attempts]

"""How the SQLite writer thread writes runs of job rows: few statements, and new rows in the order of the id index
when that order is free to choose."""

from __future__ import annotations

import functools
import itertools
import operator
import sqlite3
from collections.abc import Sequence
from typing import Any

Row = tuple[Any, ...]
ROWS_PER_STATEMENT = 500  # 8 values a row: far below SQLite's 32,766 bound variables
# A run of inserts from several requests, each in id order, at least this many rows: inserted sorted by id, so the
# id index (random UUID4 keys) is filled in key order, about half the CPU of random order (docs/design.md, "Ids").
# Each request's own rows keep their order; below this, a commit's rows are too sparse in the index to gain.
SORTED_ROWS = 500
_COLUMNS = "INSERT INTO jobs (id, seq, status, method, name, run_at, finished_at, data) VALUES "
_UPSERT = (
    " ON CONFLICT (id) DO UPDATE SET status = excluded.status, run_at = excluded.run_at,"
    " finished_at = excluded.finished_at, seq = excluded.seq, data = excluded.data"
)


def in_id_order(runs: Sequence[list[Row]], ascending: Sequence[bool]) -> list[Row]:
    """The rows of several inserts, one list. Merged by id when each insert's rows ascend by id (`ascending`, told
    by each insert: a batch's generated ids, validate.BatchIds) and there are SORTED_ROWS of them; in the order
    given otherwise."""
    rows = list(itertools.chain.from_iterable(runs))
    if len(runs) > 1 and len(rows) >= SORTED_ROWS and all(ascending):
        rows.sort(key=_ROW_ID)  # stable: of two rows with one id, the first accepted is still written first
    return rows


_ROW_ID = operator.itemgetter(0)


@functools.lru_cache(maxsize=64)
def _statement(rows: int, upsert: bool) -> str:
    return (
        _COLUMNS
        + ",".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * rows)
        + (_UPSERT if upsert else " ON CONFLICT (id) DO NOTHING")
    )


def execute_rows(conn: sqlite3.Connection, rows: list[Row], *, upsert: bool) -> int:
    """Write rows with as few statements as possible; how many rows changed."""
    changed = 0
    for start in range(0, len(rows), ROWS_PER_STATEMENT):
        chunk = rows[start : start + ROWS_PER_STATEMENT]
        changed += conn.execute(_statement(len(chunk), upsert), list(itertools.chain.from_iterable(chunk))).rowcount
    return changed

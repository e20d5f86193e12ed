"""The SQLite file: how poulpe opens a connection to it, which faults are the disk's, and the smallest durable write."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


# The writer's own connection: a page cache that holds the id index (random UUID4 keys land on any of its pages,
# and a miss is a read from the file for each), and a checkpoint every WAL_CHECKPOINT_PAGES pages instead of
# SQLite's 1,000: a page written by many commits is copied back to the database file once, and the checkpoint's
# fsync of that file comes ten times less often. The WAL file grows to about 40 MB before each checkpoint.
WRITER_CACHE_KIB = 64 * 1024
WAL_CHECKPOINT_PAGES = 10_000


def for_writing(conn: sqlite3.Connection) -> sqlite3.Connection:
    """The writer thread's connection, set for random-key inserts (above)."""
    conn.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")
    conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES}")
    return conn


def disk_fault(exc: BaseException) -> bool:
    """A fault of the disk under the file (full, or failing), which may pass: not a wrong path or a foreign file."""
    if isinstance(exc, sqlite3.Error):
        name = getattr(exc, "sqlite_errorname", "")
        return name == "SQLITE_FULL" or name.startswith("SQLITE_IOERR")
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO)


def probe(conn: sqlite3.Connection) -> None:
    """The smallest write that must reach the disk: the header's user_version, set to what it is."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    conn.execute(f"PRAGMA user_version = {version}")

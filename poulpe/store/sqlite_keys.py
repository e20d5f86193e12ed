"""The SQLite store's part of keys and the deployment-wide pause (SPEC 10.1): the `keys` and `flags` tables."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import msgspec

from poulpe.keys import KeyLimits

_limits_decoder = msgspec.json.Decoder(KeyLimits)


def read(conn: sqlite3.Connection) -> tuple[dict[str, KeyLimits], bool]:
    """Every key's own limits, and whether the whole deployment is paused."""
    rows = conn.execute("SELECT key, limits FROM keys").fetchall()
    paused = conn.execute("SELECT value FROM flags WHERE name = 'paused'").fetchone()
    return {key: _limits_decoder.decode(data) for key, data in rows}, bool(paused and paused[0] == "1")


def write_key(key: str, limits: KeyLimits | None) -> Callable[[sqlite3.Connection], None]:
    """The writer's step that stores a key's own limits (None or empty: removes them)."""

    def write(conn: sqlite3.Connection) -> None:
        if limits is None or limits.empty:
            conn.execute("DELETE FROM keys WHERE key = ?", (key,))
        else:
            conn.execute(
                "INSERT INTO keys VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET limits = excluded.limits",
                (key, msgspec.json.encode(limits)),
            )

    return write


def write_paused(paused: bool) -> Callable[[sqlite3.Connection], None]:
    def write(conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO flags VALUES ('paused', ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            ("1" if paused else "0",),
        )

    return write

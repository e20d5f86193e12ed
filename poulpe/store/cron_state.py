"""What poulpe remembers of each cron line, in the job store, keyed by the line's fingerprint: up to when its fires
were handled (`seen`: catch-up replays only what came after), its latest fire's job id (overlap and `GET /cron`
look at that job), and an operator's pause. Stored, so a restart and every process sharing a Redis see the same.

`seen` only moves forward, whichever process writes it (a max, in one statement or one Lua script).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple, Protocol

from poulpe.store.base import Store

if TYPE_CHECKING:
    from poulpe.store.redis import RedisStore
    from poulpe.store.sqlite import SqliteStore

_TABLE = "CREATE TABLE IF NOT EXISTS cron_lines (fp TEXT PRIMARY KEY, seen REAL, last_id TEXT, paused INTEGER)"
_CHUNK = 500  # SQLite's bound parameters per statement stay well under its limit


class LineState(NamedTuple):
    seen: float | None = None  # fires at or before this time were handled (fired, skipped or paused)
    last_id: str | None = None  # the latest fire's job id (a scheduled fire or a run now)
    paused: bool | None = None  # an operator's pause or resume; None: as the file says


class Mark(NamedTuple):
    """A scheduled fire handled: `job_id` is None when it was not submitted (skipped, paused)."""

    fp: str
    fire: float
    job_id: str | None


class CronStates(Protocol):
    async def read(self, fps: Sequence[str]) -> dict[str, LineState]: ...

    async def begin(self, fps: Sequence[str], now: float) -> None:
        """Lines seen for the first time: their fires before `now` are none of catch-up's business."""

    async def handled(self, marks: Sequence[Mark]) -> None: ...

    async def set_last(self, fp: str, job_id: str) -> None: ...

    async def set_paused(self, fp: str, paused: bool) -> None: ...


def cron_states(store: Store) -> CronStates:
    from poulpe.store.redis import RedisStore
    from poulpe.store.sqlite import SqliteStore

    store = getattr(store, "coordinator", store)  # with --partitions: partition 0 (docs/scale.md)
    if isinstance(store, RedisStore):
        return RedisCronStates(store)
    if isinstance(store, SqliteStore):
        return SqliteCronStates(store)
    raise TypeError(f"no cron state for a {type(store).__name__}")


class SqliteCronStates:
    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self._made = False

    async def _write(self, fn: Callable[[sqlite3.Connection], None]) -> None:
        made = self._made

        def write(conn: sqlite3.Connection) -> None:
            if not made:
                conn.execute(_TABLE)
            fn(conn)

        await self.store._write(write)
        self._made = True

    async def read(self, fps: Sequence[str]) -> dict[str, LineState]:
        if not self._made:
            await self._write(lambda conn: None)
        out: dict[str, LineState] = {}
        for at in range(0, len(fps), _CHUNK):
            chunk = fps[at : at + _CHUNK]
            rows = self.store.reader.execute(
                f"SELECT fp, seen, last_id, paused FROM cron_lines WHERE fp IN ({','.join('?' * len(chunk))})",
                chunk,
            ).fetchall()
            for fp, seen, last_id, paused in rows:
                out[fp] = LineState(seen, last_id, None if paused is None else bool(paused))
        return out

    async def begin(self, fps: Sequence[str], now: float) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO cron_lines (fp, seen) VALUES (?, ?) ON CONFLICT (fp) DO UPDATE SET seen = "
                "coalesce(seen, excluded.seen)",
                [(fp, now) for fp in fps],
            )

        await self._write(write)

    async def handled(self, marks: Sequence[Mark]) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO cron_lines (fp, seen, last_id) VALUES (?, ?, ?) ON CONFLICT (fp) DO UPDATE SET "
                "last_id = CASE WHEN excluded.last_id IS NOT NULL AND (seen IS NULL OR excluded.seen > seen) "
                "THEN excluded.last_id ELSE last_id END, seen = max(coalesce(seen, excluded.seen), excluded.seen)",
                marks,
            )

        await self._write(write)

    async def set_last(self, fp: str, job_id: str) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO cron_lines (fp, last_id) VALUES (?, ?) ON CONFLICT (fp) DO UPDATE SET last_id = "
                "excluded.last_id",
                (fp, job_id),
            )

        await self._write(write)

    async def set_paused(self, fp: str, paused: bool) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO cron_lines (fp, paused) VALUES (?, ?) ON CONFLICT (fp) DO UPDATE SET paused = "
                "excluded.paused",
                (fp, int(paused)),
            )

        await self._write(write)


# One script for a tick's handled fires: per line, `seen` moves forward only, and `last_id` with it.
_HANDLED = """
for i, key in ipairs(KEYS) do
  local fire = tonumber(ARGV[2 * i - 1])
  local seen = tonumber(redis.call('HGET', key, 'seen'))
  if not seen or seen < fire then
    redis.call('HSET', key, 'seen', ARGV[2 * i - 1])
    if ARGV[2 * i] ~= '' then redis.call('HSET', key, 'last_id', ARGV[2 * i]) end
  end
end
return 0
"""


class RedisCronStates:
    def __init__(self, store: RedisStore) -> None:
        self.store = store

    def _key(self, fp: str) -> str:
        return f"{self.store.base}cron:{fp}"

    async def read(self, fps: Sequence[str]) -> dict[str, LineState]:
        async with self.store._reachable():
            pipe = self.store.redis.pipeline(transaction=False)
            for fp in fps:
                pipe.hmget(self._key(fp), "seen", "last_id", "paused")
            rows = await pipe.execute()
        out = {}
        for fp, (seen, last_id, paused) in zip(fps, rows, strict=True):
            if seen is None and last_id is None and paused is None:
                continue
            out[fp] = LineState(
                None if seen is None else float(seen),
                None if last_id is None else _text(last_id),
                None if paused is None else _text(paused) == "1",
            )
        return out

    async def begin(self, fps: Sequence[str], now: float) -> None:
        async with self.store._reachable():
            pipe = self.store.redis.pipeline(transaction=False)
            for fp in fps:
                pipe.hsetnx(self._key(fp), "seen", repr(now))
            await pipe.execute()

    async def handled(self, marks: Sequence[Mark]) -> None:
        if not marks:
            return
        args: list[str] = []
        for mark in marks:
            args += [repr(float(mark.fire)), mark.job_id or ""]
        async with self.store._reachable():
            await self.store.redis.eval(_HANDLED, len(marks), *[self._key(m.fp) for m in marks], *args)

    async def set_last(self, fp: str, job_id: str) -> None:
        async with self.store._reachable():
            await self.store.redis.hset(self._key(fp), "last_id", job_id)

    async def set_paused(self, fp: str, paused: bool) -> None:
        async with self.store._reachable():
            await self.store.redis.hset(self._key(fp), "paused", "1" if paused else "0")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value

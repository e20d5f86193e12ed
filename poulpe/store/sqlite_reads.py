"""The SQLite store's reads: SqliteStore inherits these methods. Point reads run on the event loop's own connection
(WAL readers never wait for the writer); scans run in a thread (`SqliteStore._scan`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar, Unpack

from poulpe.job import FINAL, Job, Status, decode_job
from poulpe.keys import KeyLimits
from poulpe.store import sqlite_keys as keys
from poulpe.store import sqlite_windows as windows
from poulpe.store.base import JobQuery, Page, Pending, id_range, matching_page
from poulpe.store.timing import Timed

T = TypeVar("T")
_STATUSES = tuple(s.value for s in Status)
_NOT_FINAL = tuple(s.value for s in Status if s not in FINAL)
_STATUS_OF = {s.value: s for s in Status}  # a dict lookup: Status(value) is a third of a million-job restart


class SqliteReads(Timed):
    @property
    def reader(self) -> sqlite3.Connection:
        raise NotImplementedError

    async def _scan(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError

    async def get(self, job_id: str) -> Job | None:
        with self._timed("get"):
            row = self.reader.execute("SELECT data FROM jobs WHERE id = ?", (job_id,)).fetchone()
            return decode_job(row[0]) if row else None

    async def get_many(self, ids: Sequence[str]) -> list[Job]:
        with self._timed("get_many"):
            out: list[Job] = []
            for start in range(0, len(ids), 500):
                chunk = list(ids[start : start + 500])
                marks = ",".join("?" * len(chunk))
                rows = self.reader.execute(f"SELECT data FROM jobs WHERE id IN ({marks})", chunk).fetchall()
                out.extend(decode_job(r[0]) for r in rows)
            return out

    async def pending(self) -> list[Pending]:
        with self._timed("pending"):

            def scan(conn: sqlite3.Connection) -> list[Pending]:
                marks = ",".join("?" * len(_NOT_FINAL))
                rows = conn.execute(f"SELECT run_at, seq, id, status FROM jobs WHERE status IN ({marks})", _NOT_FINAL)
                return [Pending(r[0], r[1], r[2], _STATUS_OF[r[3]]) for r in rows]

            return await self._scan(scan)

    async def deadlines(self) -> list[tuple[float, int, str]]:
        with self._timed("deadlines"):
            return await self._scan(windows.deadlines)

    async def list_jobs(self, **query: Unpack[JobQuery]) -> Page:
        with self._timed("list_jobs"):
            status, method = query.get("status"), query.get("method")
            name, match = query.get("name"), query.get("match")
            page, size = query.get("page", 1), query.get("size", 50)
            where, args = [], []
            for column, value in (("status", status.value if status else None), ("method", method), ("name", name)):
                if value is not None:
                    where.append(f"{column} = ?")
                    args.append(value)
            if query.get("id_prefix"):
                where.append("id >= ? AND id < ?")
                args += id_range(query.get("id_prefix") or "")
            clause = f"WHERE {' AND '.join(where)}" if where else ""

            def scan(conn: sqlite3.Connection) -> Page:
                if match is not None:
                    found = conn.execute(f"SELECT data FROM jobs {clause} ORDER BY rowid DESC", args)
                    return matching_page((decode_job(row[0]) for row in found), match, page, size)
                total = conn.execute(f"SELECT count(*) FROM jobs {clause}", args).fetchone()[0]
                rows = conn.execute(
                    f"SELECT data FROM jobs {clause} ORDER BY rowid DESC LIMIT ? OFFSET ?",
                    [*args, size, (page - 1) * size],
                ).fetchall()
                return Page([decode_job(r[0]) for r in rows], total)

            return await self._scan(scan)

    async def ids(self, status: Status, limit: int) -> list[str]:
        with self._timed("ids"):
            # the status index holds the rowid (acceptance order): the rows are visited newest first, blobs untouched
            rows = self.reader.execute(
                "SELECT id FROM jobs WHERE status = ? ORDER BY rowid DESC LIMIT ?", (status.value, limit)
            ).fetchall()
            return [row[0] for row in rows]

    async def counts(self) -> dict[str, int]:
        with self._timed("counts"):

            def scan(conn: sqlite3.Connection) -> dict[str, int]:
                found = dict(conn.execute("SELECT status, count(*) FROM jobs GROUP BY status").fetchall())
                return {s: int(found.get(s, 0)) for s in _STATUSES}

            return await self._scan(scan)

    async def prefix_counts(self, prefix: str, statuses: Iterable[Status]) -> dict[str, int]:
        with self._timed("prefix_counts"):
            wanted = [s.value for s in statuses]  # a range of the primary key: only the prefix's rows are visited
            among = f"status IN ({','.join('?' * len(wanted))})"
            query = f"SELECT status, count(*) FROM jobs WHERE id >= ? AND id < ? AND {among} GROUP BY status"
            found = dict(self.reader.execute(query, [*id_range(prefix), *wanted]).fetchall())
            return {s: int(found.get(s, 0)) for s in wanted}

    async def day_counts(self, day: str) -> dict[str, int]:
        with self._timed("day_counts"):
            row = self.reader.execute("SELECT succeeded, failed FROM days WHERE day = ?", (day,)).fetchone()
            return {"succeeded": row[0] if row else 0, "failed": row[1] if row else 0}

    async def max_seq(self) -> int:
        with self._timed("max_seq"):
            row = self.reader.execute("SELECT max(seq) FROM jobs").fetchone()
            return int(row[0] or 0)

    def _leased(self, conn: sqlite3.Connection) -> list[Job]:
        rows = conn.execute("SELECT data FROM jobs WHERE method = 'QUEUE' AND status = 'running'").fetchall()
        jobs = [decode_job(row[0]) for row in rows]
        return sorted((job for job in jobs if job.lease_until is not None), key=lambda job: job.lease_until or 0.0)

    async def expired_leases(self, now: float, limit: int) -> list[Job]:
        with self._timed("expired_leases"):
            leased = self._leased(self.reader)
            return [job for job in leased if (job.lease_until or 0.0) <= now][:limit]

    async def next_lease_end(self) -> float | None:
        with self._timed("next_lease_end"):
            leased = self._leased(self.reader)
            return leased[0].lease_until if leased else None

    async def next_due(self, kind: str) -> float | None:
        with self._timed("next_due"):
            row = self.reader.execute(
                "SELECT min(run_at) FROM jobs WHERE method = 'QUEUE' AND status IN ('scheduled', 'queued', 'retrying')"
                " AND name = ?",
                (kind,),
            ).fetchone()
            return float(row[0]) if row and row[0] is not None else None

    async def controls(self) -> tuple[dict[str, KeyLimits], bool]:
        with self._timed("controls"):
            return keys.read(self.reader)

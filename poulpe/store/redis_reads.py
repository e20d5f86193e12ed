"""The Redis store's reads, over its link to Redis: RedisStore inherits these methods. Records are read by id
(`job:<id>`); the status indexes (`st:<status>`, `all`) are sorted sets scored by acceptance order, read newest
first."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Unpack

from poulpe.job import Job, Status, decode_job
from poulpe.store.base import JobQuery, Page, Pending
from poulpe.store.redis_link import RedisLink

_STATUSES = tuple(s.value for s in Status)
_WAITING = (Status.SCHEDULED.value, Status.QUEUED.value, Status.RETRYING.value, Status.RUNNING.value)
_CHUNK = 500


class RedisReads(RedisLink):
    # --- reads -----------------------------------------------------------------------------------------------
    async def get(self, job_id: str) -> Job | None:
        with self._timed("get"):
            async with self._reachable():
                record = await self.redis.get(self.base + "job:" + job_id)
            return decode_job(record) if record is not None else None

    async def get_many(self, ids: Sequence[str]) -> list[Job]:
        with self._timed("get_many"):
            out: list[Job] = []
            for start in range(0, len(ids), _CHUNK):
                keys = [self.base + "job:" + i for i in ids[start : start + _CHUNK]]
                async with self._reachable():
                    records = await self.redis.mget(keys)
                out.extend(decode_job(r) for r in records if r is not None)
            return out

    async def pending(self) -> list[Pending]:
        with self._timed("pending"):
            out: list[Pending] = []
            for status in _WAITING:
                ids = await self._ids(self.base + "st:" + status, 0, -1, newest_first=False)
                out.extend(Pending(j.run_at, j.seq, j.id, j.status) for j in await self.get_many(ids) if not j.final)
            return out

    async def _ids(self, key: str, start: int, stop: int, *, newest_first: bool = True) -> list[str]:
        async with self._reachable():
            found = await (self.redis.zrevrange if newest_first else self.redis.zrange)(key, start, stop)
        return [_text(i) for i in found]

    async def list_jobs(self, **query: Unpack[JobQuery]) -> Page:
        with self._timed("list_jobs"):
            status, method = query.get("status"), query.get("method")
            name, match = query.get("name"), query.get("match")
            prefix = query.get("id_prefix") or ""
            page, size = query.get("page", 1), query.get("size", 50)
            index = self.base + ("st:" + status.value if status else "all")
            skip = (page - 1) * size
            if (
                method is None and name is None and not prefix and match is None
            ):  # the index alone pages: one range read
                async with self._reachable():
                    total = int(await self.redis.zcard(index))
                jobs = await self._in_order(await self._ids(index, skip, skip + size - 1))
                return Page(jobs, total)
            # Filters beyond status read the index newest first in chunks and keep what matches.
            matched: list[Job] = []
            total, start = 0, 0
            while True:
                ids = await self._ids(index, start, start + _CHUNK - 1)
                if not ids:
                    return Page(matched, total)
                for job in await self._in_order(ids):
                    if (
                        (method is None or job.method.value == method)
                        and (name is None or job.name == name)
                        and job.id.startswith(prefix)
                        and (match is None or match(job))
                    ):
                        if skip <= total < skip + size:
                            matched.append(job)
                        total += 1
                start += _CHUNK

    async def ids(self, status: Status, limit: int) -> list[str]:
        with self._timed("ids"):
            return await self._ids(self.base + "st:" + status.value, 0, limit - 1) if limit > 0 else []

    async def scored_ids(self, status: Status, limit: int) -> list[tuple[float, str]]:
        """(acceptance order, id) of a status's newest `limit` jobs: --partitions merges them."""
        async with self._reachable():
            found = await self.redis.zrevrange(self.base + "st:" + status.value, 0, limit - 1, withscores=True)
        return [(float(pair[1]), _text(pair[0])) for pair in found]

    async def _in_order(self, ids: list[str]) -> list[Job]:
        by_id = {job.id: job for job in await self.get_many(ids)}
        return [by_id[i] for i in ids if i in by_id]

    async def counts(self) -> dict[str, int]:
        with self._timed("counts"):
            async with self._reachable():
                found = await self.redis.hgetall(self.base + "count")
            counted = {_text(k): int(v) for k, v in found.items()}
            return {s: max(0, counted.get(s, 0)) for s in _STATUSES}

    async def prefix_counts(self, prefix: str, statuses: Iterable[Status]) -> dict[str, int]:
        with self._timed("prefix_counts"):
            found: dict[str, int] = {}
            async with self._reachable():  # a scan of each status index (docs/tenants.md says what it costs)
                for status in statuses:
                    found[status.value] = 0
                    async for _ in self.redis.zscan_iter(
                        self.base + "st:" + status.value, match=prefix + "*", count=1000
                    ):
                        found[status.value] += 1
            return found

    async def day_counts(self, day: str) -> dict[str, int]:
        with self._timed("day_counts"):
            async with self._reachable():
                found = await self.redis.hgetall(self.base + "day:" + day)
            counted = {_text(k): int(v) for k, v in found.items()}
            return {"succeeded": counted.get("succeeded", 0), "failed": counted.get("failed", 0)}

    async def max_seq(self) -> int:
        with self._timed("max_seq"):
            async with self._reachable():
                top = await self.redis.zrevrange(self.base + "all", 0, 0, withscores=True)
            return int(top[0][1]) if top else 0


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

"""On a shared store (Redis), the Kafka outbox is shared too, so a result a dead process owed is sent by a live one.

Each process keeps its own outbox file (kafka_outbox.py) and mirrors it into one sorted set of the namespace: an id
taken from Kafka is there, scored with the time after which any process may check it, until some process has its
result acknowledged by the broker. Every process looks at the ids whose time has passed every few seconds: a final
job's result is sent (again), an id is pushed back `HANDOVER_S` otherwise. So a process killed between a job's end
and its result costs a duplicate at most, never a result: the others send it within `HANDOVER_S` plus a sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from poulpe.errors import StoreUnavailable
from poulpe.intake.kafka_outbox import Outbox
from poulpe.job import Job
from poulpe.store.redis import RedisStore

log = logging.getLogger("poulpe.kafka")
HANDOVER_S = 10.0  # an id's owner has this long to send its result before another process checks it
SWEEP_S = 2.0
_BATCH = 200

# the ids whose time passed, each pushed back by `HANDOVER_S` in the same step: two processes never take one at once
_TAKE = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], ARGV[2], id) end
return ids
"""


class SharedOutbox(Outbox):
    """The outbox file, mirrored into `<namespace>kout` (written before the jobs are stored, as the file is)."""

    shared = True

    def __init__(self, path: Path, store: RedisStore) -> None:
        super().__init__(path)
        self.store = store
        self.key = store.base + "kout"

    async def add(self, ids: Iterable[str]) -> None:
        ids = list(dict.fromkeys(ids))
        await super().add(ids)
        if ids:
            async with self.store._reachable():
                await self.store.redis.zadd(self.key, dict.fromkeys(ids, time.time() + HANDOVER_S))

    async def remove(self, ids: Iterable[str]) -> None:
        """Also ids another process took: their result went from here."""
        ids = list(dict.fromkeys(ids))
        await super().remove(ids)
        if ids:
            try:
                async with self.store._reachable():
                    await self.store.redis.zrem(self.key, *ids)
            except StoreUnavailable:
                log.warning("kafka: %d delivered results stay in the shared outbox (a duplicate later)", len(ids))

    async def take_due(self) -> list[str]:
        now = time.time()
        async with self.store._reachable():
            found = await self.store.redis.eval(_TAKE, 1, self.key, repr(now), repr(now + HANDOVER_S), _BATCH)
        return [i.decode() if isinstance(i, bytes) else str(i) for i in found]


async def sweep_forever(
    outbox: SharedOutbox,
    get_many: Callable[[Sequence[str]], Awaitable[list[Job]]],
    push: Callable[[Job], Any],
) -> None:
    """Send the results other processes owed and did not send in time; forget ids whose job was never stored."""
    while True:
        await asyncio.sleep(SWEEP_S)
        with contextlib.suppress(StoreUnavailable):
            ids = await outbox.take_due()
            if not ids:
                continue
            jobs = {job.id: job for job in await get_many(ids)}
            final = [job for job in jobs.values() if job.final]
            for job in final:
                push(job)
            await outbox.remove(set(ids) - jobs.keys())
            if final:
                log.info("kafka: %d results another process owed go from here", len(final))

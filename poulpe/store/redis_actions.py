"""Bulk actions on Redis (SPEC 10.4): RedisStore inherits these methods.

B action:<id>   hash   data (the record), ids (the matched ids, JSON), progress (JSON)
B actions_open  zset   id -> held until (unfinished actions; a process whose hold ran out stopped)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import redis.asyncio as aioredis

from poulpe.action_record import Action, Progress, decode_ids, encode_ids
from poulpe.job import Job, Status
from poulpe.store.redis_args import ARGS
from poulpe.store.timing import Timed

# ARGV: base, now, held until. Unfinished actions nobody holds, now held by the caller.
OPEN_ACTIONS = """
local ids = redis.call('ZRANGEBYSCORE', ARGV[1]..'actions_open', '-inf', ARGV[2])
for _, id in ipairs(ids) do redis.call('ZADD', ARGV[1]..'actions_open', ARGV[3], id) end
return ids
"""
ACTION_SCRIPTS = {"open_actions": ARGS + OPEN_ACTIONS}
_CHUNK = 500


class RedisActions(Timed):
    base: str

    @property
    def redis(self) -> aioredis.Redis:
        raise NotImplementedError

    def _reachable(self) -> contextlib.AbstractAsyncContextManager[None]:
        raise NotImplementedError

    async def _script(self, script: str, args: list[Any]) -> Any:
        raise NotImplementedError

    async def get_many(self, ids: Sequence[str]) -> list[Job]:
        raise NotImplementedError

    async def find_ids(self, status: Status | None, match: Callable[[Job], bool]) -> list[str]:
        with self._timed("find_ids"):
            index = self.base + ("st:" + status.value if status else "all")
            found: list[str] = []
            start = 0
            while True:
                async with self._reachable():
                    ids = [_text(i) for i in await self.redis.zrange(index, start, start + _CHUNK - 1)]
                if not ids:
                    return found
                by_id = {job.id: job for job in await self.get_many(ids)}
                found.extend(i for i in ids if i in by_id and match(by_id[i]))
                start += _CHUNK

    async def add_action(self, action: Action, ids: Sequence[str], hold_until: float) -> None:
        with self._timed("add_action"):
            async with self._reachable():
                pipe = self.redis.pipeline(transaction=True)
                pipe.hset(self.base + "action:" + action.id, mapping={
                    "data": msgspec.json.encode(action), "ids": encode_ids(list(ids)), "progress": b"{}"})  # fmt: skip
                pipe.zadd(self.base + "actions_open", {action.id: hold_until})
                await pipe.execute()

    async def get_action(self, action_id: str) -> Action | None:
        with self._timed("get_action"):
            async with self._reachable():
                data, progress = await self.redis.hmget(self.base + "action:" + action_id, ["data", "progress"])
            if data is None:
                return None
            action = msgspec.json.decode(data, type=Action)
            moved = msgspec.json.decode(progress or b"{}", type=Progress)
            action.done, action.errors, action.finished_at = moved.done, moved.errors, moved.finished_at
            action.last_error = moved.last_error
            return action

    async def action_ids(self, action_id: str) -> list[str]:
        with self._timed("action_ids"):
            async with self._reachable():
                data = await self.redis.hget(self.base + "action:" + action_id, "ids")
            return decode_ids(data) if data else []

    async def action_progress(self, action_id: str, progress: Progress, hold_until: float) -> None:
        with self._timed("action_progress"):
            async with self._reachable():
                pipe = self.redis.pipeline(transaction=True)
                pipe.hset(self.base + "action:" + action_id, "progress", msgspec.json.encode(progress))
                if progress.finished_at is None:
                    pipe.zadd(self.base + "actions_open", {action_id: hold_until})
                else:
                    pipe.zrem(self.base + "actions_open", action_id)
                await pipe.execute()

    async def open_actions(self, now: float, hold: float) -> list[str]:
        with self._timed("open_actions"):
            ids = await self._script("open_actions", [repr(now), repr(now + hold)])
            return [_text(i) for i in ids]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

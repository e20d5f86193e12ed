"""A token's quotas (SPEC 10.7): `rate` submissions per second (a token bucket) and `max_pending` unfinished jobs
of its tenant. Past either, the submission answers 429 with `Retry-After`.

The bucket holds `rate` submissions (one second's worth) and refills at `rate` a second. A submission is taken
while the bucket holds at least one; a batch of n takes n, so the bucket may owe: the next ones wait until it is
paid back. On Redis the bucket is a hash updated by one script on Redis's own clock, so every process sharing the
store shares it; on the embedded store it lives in this process, which is the only one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, Protocol

from poulpe.errors import PoulpeError, StoreUnavailable
from poulpe.store.base import Store

_TAKE = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1e6
local rate, n = tonumber(ARGV[1]), tonumber(ARGV[2])
local held = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens = tonumber(held[1]) or rate
local stamp = tonumber(held[2]) or t
tokens = math.min(rate, tokens + math.max(0, t - stamp) * rate)
local ok = 0
if tokens >= 1 then
  tokens = tokens - n
  ok = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'stamp', tostring(t))
redis.call('EXPIRE', KEYS[1], 3600)
return {ok, tostring(tokens)}
"""


class TooMany(PoulpeError):
    """429: past the token's rate or its tenant's max_pending; `retry_after` seconds is the answer's header."""

    status = 429

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = max(1, math.ceil(retry_after))
        self.headers = {"Retry-After": str(self.retry_after)}


class Buckets(Protocol):
    async def take(self, name: str, rate: float, n: int) -> float | None:
        """Take n submissions from the bucket `name`; None when taken, else the seconds until one is left."""


class LocalBuckets:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._held: dict[str, tuple[float, float]] = {}  # name -> (tokens, stamp)

    async def take(self, name: str, rate: float, n: int) -> float | None:
        now = self.clock()
        tokens, stamp = self._held.get(name, (rate, now))
        tokens = min(rate, tokens + max(0.0, now - stamp) * rate)
        if tokens >= 1:
            self._held[name] = (tokens - n, now)
            return None
        self._held[name] = (tokens, now)
        return (1 - tokens) / rate


class RedisBuckets:
    """The buckets in Redis, under the store's prefix (`<prefix>quota:<token name>`)."""

    def __init__(self, redis: Callable[[], Any], base: str) -> None:
        self.redis = redis  # the store's client, looked up at each use (it reconnects)
        self.base = base

    async def take(self, name: str, rate: float, n: int) -> float | None:
        from redis.exceptions import RedisError

        try:
            ok, tokens = await self.redis().eval(_TAKE, 1, self.base + "quota:" + name, repr(rate), n)
        except RedisError as exc:
            raise StoreUnavailable(f"the store did not answer the quota check: {exc.__class__.__name__}") from None
        if int(ok):
            return None
        return (1 - float(tokens)) / rate


def buckets_for(store: Store) -> Buckets:
    """Shared through Redis when the store is; this process's own on the embedded store."""
    if store.kind == "redis":
        from poulpe.store.redis import RedisStore

        shared = getattr(store, "coordinator", store)  # with --partitions: partition 0 (docs/scale.md)
        assert isinstance(shared, RedisStore)
        return RedisBuckets(lambda: shared.redis, shared.base)
    return LocalBuckets()

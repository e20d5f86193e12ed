"""Flow control of this process's ready jobs: keys' pauses, parallelism and rates, and the deployment-wide pause.

The ready structure asks `held(key)` before it hands out a key's job and tells `started` / `ended`. Limits are the
stored ones (kept here as a cache the key routes refresh, and on a shared store re-read every second); running
counts and token buckets are this process's own on the embedded store, where this process runs every job.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable

from poulpe.keys import KeyLimits, effective

PAUSED, PARALLELISM, RATE = "paused", "parallelism", "rate"
NO_KEY = ""  # the group of jobs without a key: never limited, only the deployment-wide pause holds it


class Bucket:
    """A token bucket: at most `rate` tokens, refilled at `rate` per `period` seconds; a start takes one.

    A new bucket holds one token, not `rate`: a key's first jobs are spread over time from the first second (a
    full bucket would let 2 x rate start within the first period); a key quiet for a period may burst `rate`.
    """

    __slots__ = ("stamp", "tokens")

    def __init__(self, rate: float, now: float) -> None:
        self.tokens = min(1.0, rate)
        self.stamp = now

    def refill(self, rate: float, period: float, now: float) -> float:
        self.tokens = min(rate, self.tokens + (now - self.stamp) * rate / period)
        self.stamp = now
        return self.tokens

    def next_token(self, rate: float, period: float, now: float) -> float:
        """When the bucket holds one token again."""
        missing = 1.0 - self.refill(rate, period, now)
        return now if missing <= 1e-4 else now + missing * period / rate


class Limits:
    def __init__(self, defaults: KeyLimits | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self.defaults = defaults or KeyLimits()
        self.clock = clock
        self._own: dict[str, KeyLimits] = {}  # the stored limits of keys that have their own
        self._effective: dict[str, KeyLimits] = {}  # a cache of `of(key)`, emptied when limits change
        self.paused_all = False
        self.counted_elsewhere = False  # a shared store counts parallelism and rates (its claim): pauses only here
        self.running: Counter[str] = Counter()
        self._buckets: dict[str, Bucket] = {}
        self._starts: dict[str, deque[float]] = {}  # recent start times per key (started_in_period)

    @property
    def own(self) -> dict[str, KeyLimits]:
        """Keys' own limits. Change them by assigning a new dict or with `set_own`, so the cache is emptied."""
        return self._own

    @own.setter
    def own(self, value: dict[str, KeyLimits]) -> None:
        self._own = value
        self._effective.clear()

    def set_own(self, key: str, limits: KeyLimits | None) -> None:
        if limits is None:
            self._own.pop(key, None)
        else:
            self._own[key] = limits
        self._effective.clear()

    def of(self, key: str) -> KeyLimits:
        found = self._effective.get(key)
        if found is None:
            found = KeyLimits() if key == NO_KEY else effective(self._own.get(key), self.defaults)
            if len(self._effective) > 100_000:
                self._effective.clear()
            self._effective[key] = found
        return found

    def held(self, key: str) -> str | None:
        """Why a due job of this key may not start now, or None."""
        if self.paused_all:
            return PAUSED
        if key == NO_KEY:
            return None
        limits = self.of(key)
        if limits.paused:
            return PAUSED
        if self.counted_elsewhere:
            return None
        if limits.parallelism is not None and self.running[key] >= limits.parallelism:
            return PARALLELISM
        if (
            limits.rate is not None
            and self._bucket(key, limits.rate).refill(limits.rate, limits.period, self.clock()) < 0.9999
        ):
            return RATE
        return None

    def next_token(self, key: str) -> float | None:
        """When a key held by its rate may start again."""
        limits = self.of(key)
        if limits.rate is None:
            return None
        return self._bucket(key, limits.rate).next_token(limits.rate, limits.period, self.clock())

    def started(self, key: str) -> None:
        if key == NO_KEY:
            return
        self.running[key] += 1
        limits = self.of(key)
        now = self.clock()
        if limits.rate is not None:
            bucket = self._bucket(key, limits.rate)
            bucket.refill(limits.rate, limits.period, now)
            bucket.tokens -= 1.0
        starts = self._starts.setdefault(key, deque(maxlen=10_000))
        starts.append(now)

    def ended(self, key: str) -> None:
        if key == NO_KEY:
            return
        self.running[key] -= 1
        if self.running[key] <= 0:
            del self.running[key]

    def started_in_period(self, key: str) -> int:
        starts = self._starts.get(key)
        if not starts:
            return 0
        since = self.clock() - self.of(key).period
        while starts and starts[0] < since:
            starts.popleft()
        if not starts:
            del self._starts[key]
            return 0
        return len(starts)

    def _bucket(self, key: str, rate: float) -> Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = Bucket(rate, self.clock())
        return bucket

"""Operators' controls over dispatch: keys' limits and pauses, and the deployment-wide pause (SPEC 10.1).

A change is stored first (so it survives a restart and reaches every process sharing the store), then applied to
this process's cache of limits, and the ready structure looks again at what it held back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from poulpe.dispatch.limits import NO_KEY, Limits
from poulpe.dispatch.ready import Ready
from poulpe.errors import Unavailable
from poulpe.job import Job, Status
from poulpe.keys import KeyLimits, apply_update, check_key
from poulpe.store.base import Store

log = logging.getLogger(__name__)


class KeyCounts(Protocol):
    async def key_counts(self, key: str) -> tuple[int, int, int]:
        """(waiting, running, started in the current period) for a key."""

    async def busy_keys(self) -> dict[str, tuple[int, int]]:
        """Keys that have due jobs waiting or running: (waiting, running) of each."""

    def held_reason(self, key: str) -> str | None:
        """Why a due job of this key waits now, or None."""


class Controls:
    def __init__(self, store: Store, ready: Ready, counts: KeyCounts) -> None:
        self.store = store
        self.ready = ready
        self.limits: Limits = ready.limits
        self.counts = counts
        self._reloading: asyncio.Task[None] | None = None

    async def load(self) -> None:
        """Read the stored limits and pause (at start, and on a shared store whenever they may have changed)."""
        own, paused = await self.store.controls()
        changed = own != self.limits.own or paused != self.limits.paused_all
        self.limits.own, self.limits.paused_all = own, paused
        if changed:
            self.ready.changed()

    def reload_soon(self) -> None:
        """Read the stored limits again in the background (another process may have changed them)."""
        if self._reloading is None or self._reloading.done():
            self._reloading = asyncio.get_running_loop().create_task(self._reload())

    async def _reload(self) -> None:
        try:
            await self.load()
        except Unavailable:
            pass  # the next change or the next second tries again
        except Exception:
            log.exception("reading keys' limits failed")

    def held(self, job: Job) -> str | None:
        """Why a due, queued job is not running: its key's pause or limits, or the deployment-wide pause."""
        if job.status is not Status.QUEUED:
            return None
        return self.counts.held_reason(job.key or NO_KEY)

    async def put(self, key: str, body: bytes) -> dict[str, Any]:
        check_key(key)
        limits = apply_update(body, self.limits.own.get(key, KeyLimits()))
        await self.store.set_key(key, limits)
        self._apply(key, limits)
        return await self.state(key)

    async def delete(self, key: str) -> dict[str, Any]:
        check_key(key)
        await self.store.set_key(key, None)
        self._apply(key, None)
        return await self.state(key)

    async def state(self, key: str) -> dict[str, Any]:
        check_key(key)
        limits = self.limits.of(key)
        waiting, running, started = await self.counts.key_counts(key)
        return {
            "key": key,
            "parallelism": limits.parallelism,
            "rate": limits.rate,
            "period": limits.period,
            "paused": limits.paused,
            "own": key in self.limits.own,
            "waiting": waiting,
            "running": running,
            "started_in_period": started,
        }

    async def listing(self, page: int, size: int, within: Callable[[str], bool] | None = None) -> dict[str, Any]:
        """Keys that have unfinished jobs or limits of their own, most waiting first (only those `within` takes:
        a tenant's, poulpe/tenants.py)."""
        busy = await self.counts.busy_keys()
        keys = {k for k in (set(self.limits.own) | set(busy)) - {NO_KEY} if within is None or within(k)}
        order = sorted(keys, key=lambda k: (-busy.get(k, (0, 0))[0], -busy.get(k, (0, 0))[1], k))
        start = (page - 1) * size
        states = [await self.state(key) for key in order[start : start + size]]
        return {"page": page, "size": size, "total": len(keys), "keys": states}

    async def pause_all(self, paused: bool) -> dict[str, Any]:
        await self.store.set_paused(paused)
        self.limits.paused_all = paused
        self.ready.changed()
        return {"paused": paused}

    def _apply(self, key: str, limits: KeyLimits | None) -> None:
        self.limits.set_own(key, None if limits is None or limits.empty else limits)
        self.ready.changed()

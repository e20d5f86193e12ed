"""Bulk actions (SPEC 10.4): retry, cancel, delete or run now every job a filter matches, in the background.

The matched ids are found once and stored with the action, in order. A runner acts on them a chunk at a time (the
chunk's writes share commits), stores how far it got, and between chunks yields to intake and workers
(action_pace.py: full speed while no job is submitted and the jobs it queued are taken, 7 % of the work under
steady intake). Each job it acts on is marked with the action's id in the same write as the change
(`Job.acted_by`), so an action cut by a restart resumes from its last stored chunk and skips the jobs of that chunk
it already did: each job is acted on once.
An unfinished action is held by its runner; when the hold runs out (its process stopped), another process takes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import msgspec
from prometheus_client import CollectorRegistry, Counter

from poulpe.action_pace import ALL_THREADS, Held, Pace, Signals
from poulpe.action_record import Action, Kind, Progress
from poulpe.errors import PoulpeError, Unavailable
from poulpe.job import Job, Status
from poulpe.labels import JobFilter
from poulpe.store.base import Store
from poulpe.validate import new_id

log = logging.getLogger("poulpe.jobs")
CHUNK = 200
AT_ONCE = 32  # jobs of a chunk acted on at once: their writes share commits, within a Redis client's connections
SWEEP = 2.0  # how often a process sharing the store looks for actions left by a process that stopped
IMPLIED = {"retry": Status.DEAD, "delete": Status.DEAD}  # the dead-letter retry and delete act on dead jobs


class ActionIn(msgspec.Struct, forbid_unknown_fields=True):
    """POST /actions."""

    action: Kind
    filter: JobFilter = msgspec.field(default_factory=JobFilter)


class Acts(Protocol):
    """What an action does to one job (JobManager's own commands, given the action's mark)."""

    async def get(self, job_id: str) -> Job | None: ...

    async def retry_dead_many(self, job_ids: Sequence[str], mark: str) -> list[str]: ...

    async def cancel(self, job_id: str, mark: str | None = None) -> Job: ...

    async def run_now(self, job_id: str, mark: str | None = None) -> Job: ...

    async def delete_dead(self, job_id: str) -> bool: ...


class Actions:
    def __init__(
        self,
        store: Store,
        acts: Acts,
        *,
        hold: float,
        clock: Callable[[], float],
        registry: CollectorRegistry | None = None,
        signals: Signals | None = None,
    ) -> None:
        self.store = store
        self.signals = signals or Signals(room=CHUNK)  # the load an action yields to (action_pace.py)
        self.acted = Counter(
            "poulpe_action_jobs", "Jobs handled by bulk actions here", ["action", "outcome"], registry=registry
        )
        self.acts = acts
        self.hold = max(hold, 2.0)
        self.clock = clock
        self._running: dict[str, asyncio.Task[None]] = {}
        self._sweeper: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep(), name="poulpe-actions")

    async def stop(self) -> None:
        """Stop between writes; what is not done is resumed after a restart (or by another process)."""
        for task in [*self._running.values(), *([self._sweeper] if self._sweeper else [])]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def create(self, kind: Kind, narrow: JobFilter) -> Action:
        """Find the matched jobs, store the action, and start it; answers at once (the action runs on)."""
        status = Status(narrow.status.lower()) if narrow.status else IMPLIED.get(kind)
        ids = await self.store.find_ids(status, narrow.matches)
        now = self.clock()
        action = Action(id=new_id(), action=kind, filter=msgspec.to_builtins(narrow), total=len(ids), created_at=now)
        await self.store.add_action(action, ids, now + self.hold)
        log.info("action %s %s matched=%d", action.id, kind, len(ids))
        self._spawn(action.id)
        return action

    async def get(self, action_id: str) -> Action | None:
        return await self.store.get_action(action_id)

    async def _sweep(self) -> None:
        """At start, the actions a stopped process left; on a shared store, again every SWEEP seconds."""
        first = True
        while first or self.store.shared:
            with contextlib.suppress(Unavailable):
                # alone on its store, this process may take back its own actions at once, whatever their hold
                now = self.clock() if self.store.shared or not first else math.inf
                for action_id in await self.store.open_actions(now, self.hold):
                    self._spawn(action_id)
            first = False
            await asyncio.sleep(SWEEP)

    def _spawn(self, action_id: str) -> None:
        if action_id in self._running:
            return
        task = asyncio.get_running_loop().create_task(self._run(action_id), name=f"poulpe-action-{action_id}")
        self._running[action_id] = task
        task.add_done_callback(lambda _: self._running.pop(action_id, None))

    async def _run(self, action_id: str) -> None:
        action = await self.store.get_action(action_id)
        if action is None or action.finished_at is not None:
            return
        ids = await self.store.action_ids(action_id)
        progress = Progress(action.done, action.errors, None, action.last_error)
        room = asyncio.Semaphore(AT_ONCE)
        pace = Pace(self.signals, longest=self.hold / 2)
        while progress.finished_at is None:
            chunk, began = ids[progress.done : progress.done + CHUNK], time.monotonic()
            acting = Held(self._chunk(action, chunk, room))  # the time it holds the loop paces it (action_pace.py)
            try:
                failed = await acting
            except Unavailable as exc:  # the chunk again once the store answers: its jobs done already are skipped
                log.warning("action %s waits for the store: %s", action_id, exc.message)
                await asyncio.sleep(1.0)
                continue
            progress.done += len(chunk)
            progress.errors += len(failed)
            self.acted.labels(action.action, "done").inc(len(chunk) - len(failed))
            self.acted.labels(action.action, "error").inc(len(failed))
            progress.last_error = failed[-1] if failed else progress.last_error
            if progress.done >= len(ids):
                progress.finished_at = self.clock()
            await self.store.action_progress(action_id, progress, self.clock() + self.hold)
            if progress.finished_at is None:
                await pace.rest(time.monotonic() - began, acting.seconds * ALL_THREADS)
        log.info("action %s %s done=%d errors=%d", action_id, action.action, progress.done, progress.errors)

    async def _chunk(self, action: Action, chunk: list[str], room: asyncio.Semaphore) -> list[str]:
        """Act on a chunk: why each job not acted on was not."""
        if action.action == "retry":  # the chunk at once: one read, one run of writes (dead_retry.py)
            return await self.acts.retry_dead_many(chunk, action.id)
        return [why for why in await asyncio.gather(*(self._act(action, i, room) for i in chunk)) if why]

    async def _act(self, action: Action, job_id: str, room: asyncio.Semaphore) -> str | None:
        async with room:
            return await self._act_on(action, job_id)

    async def _act_on(self, action: Action, job_id: str) -> str | None:
        """Act on one job: None when done (now, or before a restart), else why not."""
        job = await self.acts.get(job_id)
        if job is None:
            return None if action.action == "delete" else f"job {job_id} is gone"
        if action.id in (job.acted_by or ()):
            return None
        try:
            if action.action == "cancel":
                await self.acts.cancel(job_id, mark=action.id)
            elif action.action == "run_now":
                await self.acts.run_now(job_id, mark=action.id)
            elif not await self.acts.delete_dead(job_id):
                return f"job {job_id} is not dead"
        except PoulpeError as exc:
            return exc.message
        return None

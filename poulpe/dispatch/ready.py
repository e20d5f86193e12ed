"""The ready structure: due jobs of this process waiting for a worker, and the one rule that picks the next.

Workers pull (`await ready.next(worker)`); nothing here calls a worker or the manager. A free worker takes, among
ready jobs its number may run (`cc`): the highest priority; among equal priorities, keys take turns (the key
served longest ago goes first, so a key with 100,000 ready jobs delays another key's job by one turn at most);
within a key, the job's rank (order.py: due time, then acceptance order). Jobs without a key are one group.

Ready jobs sit in lanes: priority → key → `cc` set → a heap by rank. A job with `cc` waits for a free worker among
those it names; a job without `cc` goes to the lowest-numbered free worker.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import OrderedDict
from collections.abc import Callable

from poulpe.dispatch.order import Rank, rank
from poulpe.job import Job

Lane = list[tuple[Rank, int, Job]]
NO_KEY = ""  # the group of jobs without a key (a key is never empty)


def key_of(job: Job) -> str:
    return NO_KEY


def priority_of(job: Job) -> int:
    return 0


class Ready:
    def __init__(self, workers: int, *, clock: Callable[[], float] = time.time) -> None:
        self.workers = workers
        self.clock = clock
        self.held: dict[str, Job] = {}  # ready, running or being recorded here: the freshest state of each
        self.cancel_after: set[str] = set()  # running here; ends cancelled unless it succeeds
        self.cancelling: set[str] = set()  # being cancelled: no feed may take it meanwhile
        self.busy = 0  # jobs handed to a worker whose attempt has not ended
        self.on_free: Callable[[], None] = lambda: None  # a worker found nothing to do: the feed may bring more
        self._lanes: dict[int, OrderedDict[str, dict[tuple[int, ...], Lane]]] = {}
        self._count = 0
        self._idle: dict[int, asyncio.Future[Job | None]] = {}
        self._tie = itertools.count()
        self._stopping = False

    def __len__(self) -> int:
        return self._count

    def holds(self, job_id: str) -> bool:
        return job_id in self.held or job_id in self.cancelling

    def held_ids(self) -> list[str]:
        return list(self.held)

    def only_for(self, worker: int) -> int:
        """Jobs waiting that only this worker may take (sys_info's per-worker queue)."""
        return sum(len(lanes.get((worker,), ())) for keys in self._lanes.values() for lanes in keys.values())

    # --- filling ---------------------------------------------------------------------------------------------
    def take(self, job: Job) -> None:
        """A due job for this process's workers: from now on its freshest state is here."""
        self.held[job.id] = job
        keys = self._lanes.get(priority_of(job))
        if keys is None:
            keys = self._lanes[priority_of(job)] = OrderedDict()
            self._lanes = dict(sorted(self._lanes.items(), reverse=True))  # highest priority first
        lanes = keys.setdefault(key_of(job), {})
        heapq.heappush(lanes.setdefault(job.cc, []), (rank(job), next(self._tie), job))
        self._count += 1
        self._hand_out()

    def discard(self, job_id: str) -> Job | None:
        """Take a ready job back out (cancelled before it started)."""
        for keys in self._lanes.values():
            for key, lanes in keys.items():
                for cc, lane in lanes.items():
                    for i, (_, _, job) in enumerate(lane):
                        if job.id == job_id:
                            lane.pop(i)
                            heapq.heapify(lane)
                            self._count -= 1
                            self._prune(keys, key, lanes, cc, lane)
                            return job
        return None

    # --- taking ----------------------------------------------------------------------------------------------
    async def next(self, worker: int) -> Job | None:
        """The next job for this worker, waiting until there is one; None once stopped."""
        if self._stopping:
            return None
        job = self._pick(worker)
        if job is None:
            fut: asyncio.Future[Job | None] = asyncio.get_running_loop().create_future()
            self._idle[worker] = fut
            self.on_free()
            job = await fut
        return job

    def ended(self, job: Job) -> None:
        """The worker's attempt of `job` ended (its outcome is decided): the worker is free."""
        self.busy -= 1

    def stop(self) -> list[Job]:
        """Hand out nothing more; wake idle workers with None. Returns the jobs that were still waiting."""
        self._stopping = True
        for fut in self._idle.values():
            if not fut.done():
                fut.set_result(None)
        self._idle.clear()
        entries = [
            e for keys in self._lanes.values() for lanes in keys.values() for lane in lanes.values() for e in lane
        ]
        self._lanes, self._count = {}, 0
        return [job for _, _, job in sorted(entries)]

    def _hand_out(self) -> None:
        """Give ready jobs to idle workers, lowest number first."""
        for worker in sorted(self._idle):
            if not self._count:
                return
            job = self._pick(worker)
            if job is not None:
                self._idle.pop(worker).set_result(job)

    def _pick(self, worker: int) -> Job | None:
        """The dispatch rule: priority, then key turns, then rank, within what `cc` allows this worker."""
        if not self._count:
            return None
        for keys in self._lanes.values():
            for key, lanes in keys.items():
                best: Lane | None = None
                best_cc: tuple[int, ...] = ()
                for cc, lane in lanes.items():
                    if lane and (not cc or worker in cc) and (best is None or lane[0] < best[0]):
                        best, best_cc = lane, cc
                if best is None:
                    continue
                _, _, job = heapq.heappop(best)
                self._count -= 1
                keys.move_to_end(key)  # its turn is used: every other key with ready jobs goes before it again
                self._prune(keys, key, lanes, best_cc, best)
                self.busy += 1
                return job
        return None

    def _prune(
        self,
        keys: OrderedDict[str, dict[tuple[int, ...], Lane]],
        key: str,
        lanes: dict[tuple[int, ...], Lane],
        cc: tuple[int, ...],
        lane: Lane,
    ) -> None:
        if not lane:
            del lanes[cc]
            if not lanes:
                del keys[key]

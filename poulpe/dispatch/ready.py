"""The ready structure: due jobs of this process waiting for a worker, and the one rule that picks the next.

Workers pull (`await ready.next(worker)`); nothing here calls a worker or the manager. A free worker takes, among
ready jobs its number may run (`cc`): the highest priority; among equal priorities, keys take turns (the key
served longest ago goes first, so a key with 100,000 ready jobs delays another key's job by one turn at most);
within a key, the job's rank (order.py: due time, then acceptance order). Jobs without a key are one group.

Jobs come in by `admit` (a job due now, when this process owns its schedule: from the manager or the local feed)
or `take` (what a feed brings). Ready jobs sit in lanes: priority → key → `cc` set → a lane by rank. A job with `cc`
waits for a free worker among those it names; a job without `cc` goes to the lowest-numbered free worker.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterator

from poulpe.dispatch.limits import NO_KEY, RATE, Limits
from poulpe.dispatch.order import Rank, rank
from poulpe.job import Job, Status

Entry = tuple[Rank, int, Job]


class Lane:
    """Ready jobs of one priority, key and `cc` set, taken in rank order. Those that come in rank order (the usual
    case: a lane fills by due time and acceptance) wait in a deque, taken in O(1); the others in a heap. The next
    is the lower of the two heads. (A heap alone: 1.2 µs a pop at 10,000 ready jobs, a deque 0.05.)"""

    __slots__ = ("heap", "run")

    def __init__(self) -> None:
        self.run: deque[Entry] = deque()
        self.heap: list[Entry] = []

    def __len__(self) -> int:
        return len(self.run) + len(self.heap)

    def __iter__(self) -> Iterator[Entry]:
        yield from self.run
        yield from self.heap

    def push(self, entry: Entry) -> None:
        if not self.run or self.run[-1] < entry:
            self.run.append(entry)
        else:
            heapq.heappush(self.heap, entry)

    def head(self) -> Entry:
        if not self.heap:
            return self.run[0]
        if not self.run or self.heap[0] < self.run[0]:
            return self.heap[0]
        return self.run[0]

    def pop(self) -> Entry:
        if self.heap and (not self.run or self.heap[0] < self.run[0]):
            return heapq.heappop(self.heap)
        return self.run.popleft()

    def remove(self, job_id: str) -> Job | None:
        for entry in self.run:
            if entry[2].id == job_id:
                self.run.remove(entry)
                return entry[2]
        for i, entry in enumerate(self.heap):
            if entry[2].id == job_id:
                self.heap.pop(i)
                heapq.heapify(self.heap)
                return entry[2]
        return None


READY_CAP = 10_000  # due jobs held in memory at once; the rest wait in the feed until workers catch up
KEY_READY_CAP = 1_000  # ready jobs of one key held in memory at once: a key's backlog cannot crowd out the others


def key_of(job: Job) -> str:
    return job.key or NO_KEY


class Ready:
    def __init__(self, workers: int, *, limits: Limits | None = None, clock: Callable[[], float] = time.time) -> None:
        self.workers = workers
        self.clock = clock
        self.limits = limits or Limits(clock=clock)
        self.waiting: Counter[str] = Counter()  # ready jobs per key
        self.on_key_room: Callable[[str], None] = lambda key: None  # a key's ready jobs fell to half the cap
        self.held: dict[str, Job] = {}  # ready, running or being recorded here: the freshest state of each
        self.cancel_after: set[str] = set()  # running here; ends cancelled unless it succeeds
        self.cancelling: set[str] = set()  # being cancelled: no feed may take it meanwhile
        self.busy = 0  # jobs handed to a worker whose attempt has not ended
        self._key_at: dict[int, str] = {}  # the key of the job each busy worker took: its slot frees when it ends
        self.on_free: Callable[[], None] = lambda: None  # a worker found nothing to do: the feed may bring more
        self._lanes: dict[int, OrderedDict[str, dict[tuple[int, ...], Lane]]] = {}
        self._count = 0
        self._idle: dict[int, asyncio.Future[Job | None]] = {}
        self._tie = itertools.count()
        self._stopping = False
        self._wake: asyncio.TimerHandle | None = None
        self._wake_at: float | None = None

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
    def admit(self, job: Job) -> bool:
        """A job due now, taken at once if there is room (READY_CAP in all, KEY_READY_CAP for its key). Only a
        process that owns its schedule (the embedded store) admits: a shared one's jobs are claimed. False: the job
        waits in the feed, for its time or for room."""
        if job.run_at > self.clock() or self._count >= READY_CAP or self.key_full(job):
            return False
        job.status = Status.QUEUED
        self.take(job)
        return True

    def key_full(self, job: Job) -> bool:
        return self.waiting[key_of(job)] >= KEY_READY_CAP

    def take(self, job: Job) -> None:
        """A due job for this process's workers: from now on its freshest state is here."""
        self.held[job.id] = job
        keys = self._lanes.get(job.priority)
        if keys is None:
            keys = self._lanes[job.priority] = OrderedDict()
            self._lanes = dict(sorted(self._lanes.items(), reverse=True))  # highest priority first
        key = key_of(job)
        lanes = keys.setdefault(key, {})
        lane = lanes.get(job.cc)
        if lane is None:
            lane = lanes[job.cc] = Lane()
        lane.push((rank(job), next(self._tie), job))
        self._count += 1
        self.waiting[key] += 1
        self._hand_out()

    def changed(self) -> None:
        """Limits or pauses changed: jobs held back may start now."""
        self._hand_out()

    def discard(self, job_id: str) -> Job | None:
        """Take a ready job back out (cancelled before it started)."""
        for keys in self._lanes.values():
            for key, lanes in keys.items():
                for cc, lane in lanes.items():
                    job = lane.remove(job_id)
                    if job is not None:
                        self._took(key)
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

    def ended(self, worker: int) -> None:
        """The worker's attempt ended (its outcome is decided): the worker is free, the key of the job it took has
        room. The worker names itself, not the job: what it took is this structure's to remember."""
        self.busy -= 1
        key = self._key_at.pop(worker, NO_KEY)
        if key != NO_KEY:
            self.limits.ended(key)
            if self._idle:
                self._hand_out()

    def stop(self) -> list[Job]:
        """Hand out nothing more; wake idle workers with None. Returns the jobs that were still waiting."""
        self._stopping = True
        for fut in self._idle.values():
            if not fut.done():
                fut.set_result(None)
        self._idle.clear()
        if self._wake is not None:
            self._wake.cancel()
        entries = [
            e for keys in self._lanes.values() for lanes in keys.values() for lane in lanes.values() for e in lane
        ]
        self._lanes, self._count = {}, 0
        self.waiting.clear()
        return [job for _, _, job in sorted(entries)]

    def _hand_out(self) -> None:
        """Give ready jobs to idle workers, lowest number first."""
        if not self._idle:  # the usual case while jobs wait: every worker busy
            return
        for worker in sorted(self._idle):
            if not self._count:
                return
            job = self._pick(worker)
            if job is not None:
                self._idle.pop(worker).set_result(job)

    def _pick(self, worker: int) -> Job | None:
        """The dispatch rule: priority, then key turns, then rank, within what `cc` allows this worker and what
        each key's pause and limits allow now."""
        if not self._count or self.limits.paused_all:
            return None
        for keys in self._lanes.values():
            for key, lanes in keys.items():
                if key != NO_KEY:
                    why = self.limits.held(key)
                    if why is not None:
                        if why == RATE:
                            self._wake_by(self.limits.next_token(key))
                        continue
                best: Lane | None = None
                best_cc: tuple[int, ...] = ()
                for cc, lane in lanes.items():
                    if lane and (not cc or worker in cc) and (best is None or lane.head() < best.head()):
                        best, best_cc = lane, cc
                if best is None:
                    continue
                _, _, job = best.pop()
                keys.move_to_end(key)  # its turn is used: every other key with ready jobs goes before it again
                self._prune(keys, key, lanes, best_cc, best)
                self._took(key)
                self.busy += 1
                if key != NO_KEY:
                    self.limits.started(key)
                    self._key_at[worker] = key
                return job
        return None

    def _took(self, key: str) -> None:
        self._count -= 1
        self.waiting[key] -= 1
        left = self.waiting[key]
        if left <= 0:
            del self.waiting[key]
        if left == KEY_READY_CAP // 2:
            self.on_key_room(key)

    def _wake_by(self, at: float | None) -> None:
        """A key held by its rate gets a token at `at`: look again then (one timer, for the earliest)."""
        if at is None or (self._wake_at is not None and self._wake_at <= at):
            return
        if self._wake is not None:
            self._wake.cancel()
        self._wake_at = at
        self._wake = asyncio.get_running_loop().call_later(max(0.0, at - self.clock()), self._woken)

    def _woken(self) -> None:
        self._wake, self._wake_at = None, None
        self._hand_out()

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

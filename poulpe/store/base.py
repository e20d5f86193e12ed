"""The storage contract every backend meets; tests/store/test_contract.py runs it against each one. Each operation
times itself (store/timing.py): tests/store/test_timing.py checks that every backend's do."""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple, Protocol, TypedDict, Unpack

from poulpe.action_record import Action, Progress
from poulpe.batch_record import Batch
from poulpe.job import CallbackDelivery, Job, Status
from poulpe.keys import KeyLimits
from poulpe.store.timing import Timed


class JobQuery(TypedDict, total=False):
    """What `list_jobs` filters and pages by: each filter left out matches every job; page 1, 50 a page."""

    status: Status | None
    method: str | None
    name: str | None
    match: Callable[[Job], bool] | None  # filters no index answers (labels, SPEC 10.4): the jobs are read and tested
    id_prefix: str | None  # a tenant's jobs: ids `<tenant>:...` (poulpe/tenants.py)
    page: int
    size: int


def id_range(prefix: str) -> list[str]:
    """The ids starting with `prefix` are those in [prefix, the next string of its length)."""
    return [prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)]


class Pending(NamedTuple):
    """A job that still has to run, as recovery and the scheduler need it: small, so a million fit in memory."""

    run_at: float
    seq: int
    id: str
    status: Status


class Claimed(NamedTuple):
    """What one claim on a shared schedule brought: the jobs now leased to this process, and when to claim again
    at the latest."""

    jobs: list[Job]
    next_due: float | None
    next_lease_end: float | None
    next_token: float | None = None  # when a key held by its rate gets a token again
    held: dict[str, str] = {}


class Page(NamedTuple):
    jobs: list[Job]
    total: int


def matching_page(jobs: Iterable[Job], match: Callable[[Job], bool], page: int, size: int) -> Page:
    """The page of the jobs that match (read newest first), and how many match in all."""
    found: list[Job] = []
    total, skip = 0, (page - 1) * size
    for job in jobs:
        if match(job):
            if skip <= total < skip + size:
                found.append(job)
            total += 1
    return Page(found, total)


class SharedSchedule(Protocol):
    """The operations a store shared by several processes offers the dispatch engine (dispatch/shared.py)."""

    owner: str
    base: str

    async def claim(
        self,
        n: int,
        lease: float,
        now: float | None = None,
        *,
        recheck: Sequence[str] | None = None,
        defaults: KeyLimits | None = None,
    ) -> Claimed: ...

    async def key_counts(self, key: str, period: float) -> tuple[int, int, int]: ...

    async def busy_keys(self) -> dict[str, tuple[int, int]]: ...

    async def renew(self, ids: Iterable[str], lease: float) -> list[str]: ...

    async def listen(self, on_message: Callable[[str, str], None], on_connected: Callable[[], None]) -> None: ...

    async def request_cancel(self, job_id: str) -> None: ...

    async def delayed(self, cap: int) -> list[str]: ...

    async def save(self, job: Job) -> None: ...


class Store(Timed, abc.ABC):
    """Durable job records.

    Guarantees: `add` returns only once the new jobs are durable (the intake acknowledges after it); an id is
    stored once (a second `add` of it returns the stored job, marked duplicate); writes issued by one process
    are applied in the order they were issued.
    """

    kind: str
    shared = False  # True when several processes share the store's schedule (dispatch/shared.py claims from it)

    def shared_schedule(self) -> SharedSchedule | None:
        """The schedule shared with other processes, when this store has one (Redis); None: this process owns it."""
        return None

    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def ping(self) -> bool:
        """True when the store answers: /health."""

    def write_fault(self) -> str | None:
        """Why the store cannot take writes now (its last write failed: a full disk), or None: /health says it."""
        return None

    @abc.abstractmethod
    async def add(self, jobs: Sequence[Job]) -> list[tuple[Job, bool]]:
        """Store new jobs durably; for each, (the stored job, True if its id was already known)."""

    @abc.abstractmethod
    async def save(self, job: Job) -> None:
        """Write a job's new state durably. A final state also counts the job in its UTC day's totals."""

    async def save_many(self, jobs: Sequence[Job]) -> list[BaseException | None]:
        """`save` each job, together (one commit where the backend groups them); for each, None once stored or
        the error its `save` raised."""
        with self._timed("save_many"):
            return await asyncio.gather(*(self.save(job) for job in jobs), return_exceptions=True)

    @abc.abstractmethod
    async def save_final(self, job: Job, children: Sequence[Job]) -> list[tuple[Job, bool]]:
        """`save` a final job and `add` its children (SPEC 10.3) in one transaction: both or neither are durable.
        For each child, (the stored child, True if its id was already known: it is not written again)."""

    @abc.abstractmethod
    def save_soon(self, job: Job) -> None:
        """Write a job's state without waiting: ordered before any later write (the `running` mark)."""

    @abc.abstractmethod
    async def get(self, job_id: str) -> Job | None: ...

    @abc.abstractmethod
    async def get_many(self, ids: Sequence[str]) -> list[Job]:
        """The jobs that exist among `ids`, in no particular order."""

    @abc.abstractmethod
    async def delete(self, job_id: str) -> bool: ...

    @abc.abstractmethod
    async def pending(self) -> list[Pending]:
        """Every job not final yet: what a restart must schedule again (and `running` ones run again)."""

    @abc.abstractmethod
    async def list_jobs(self, **query: Unpack[JobQuery]) -> Page:
        """A page of jobs, newest first (by acceptance order)."""

    @abc.abstractmethod
    async def ids(self, status: Status, limit: int) -> list[str]:
        """Up to `limit` ids of jobs in `status`, newest first (by acceptance order), read from an index alone: no
        record is read or decoded, so it stays cheap however large the jobs (/sys_info, the dead-letter scan)."""

    @abc.abstractmethod
    async def counts(self) -> dict[str, int]:
        """How many jobs are in each status."""

    @abc.abstractmethod
    async def prefix_counts(self, prefix: str, statuses: Iterable[Status]) -> dict[str, int]:
        """How many jobs whose id starts with `prefix` are in each of `statuses` (a tenant's counts and quota)."""

    @abc.abstractmethod
    async def day_counts(self, day: str) -> dict[str, int]:
        """{"succeeded": n, "failed": n} for a UTC day `YYYY-MM-DD` (kept as jobs finish, not by scanning)."""

    @abc.abstractmethod
    async def purge(self, finished_before: float) -> int:
        """Forget final jobs that finished before this time (--result_ttl); how many went."""

    async def deadlines(self) -> list[tuple[float, int, str]]:
        """(deadline, seq, id) of every job still waiting for its first attempt with a `deadline` (SPEC 10.2): what a
        restart watches again. This reads every waiting job; a backend may answer from an index instead."""
        with self._timed("deadlines"):
            ids = [p.id for p in await self.pending() if p.status is not Status.RUNNING]
            found = []
            for start in range(0, len(ids), 500):
                for job in await self.get_many(ids[start : start + 500]):
                    if job.deadline is not None and job.attempts == 0 and not job.final:
                        found.append((job.deadline, job.seq, job.id))
            return found

    @abc.abstractmethod
    async def debounce(self, job: Job, replace: Callable[[Job], Job | None]) -> tuple[Job, bool]:
        """Submit a job of a debounce window (`job.debounce`, SPEC 10.2), in one atomic step across every process.

        While the window's job waits unstarted (`scheduled` or `queued`, no attempt, not claimed by a process),
        `replace(that job)` gives its replacement (the same id), which is stored in its place: (replacement, True).
        Otherwise, or when `replace` answers None (the job was handed to a worker), `job` is stored as the window's
        new job: (job, False). `replace` may be called more than once (each time with the freshest waiting job)."""

    @abc.abstractmethod
    async def max_seq(self) -> int:
        """The highest acceptance number stored: a restarted process counts on from it."""

    # --- QUEUE jobs and their external workers (poulpe/external.py) --------------------------------------------
    # Each of these is one atomic step: a backend shared by several processes must not split it into a read and
    # a later write (on Redis, one Lua script each).

    @abc.abstractmethod
    async def lease_queue(self, kind: str, n: int, holder: str, until: float, now: float) -> list[Job]:
        """Take up to `n` QUEUE jobs of task type `kind` that are due (`scheduled`, `queued` or `retrying` with
        `run_at <= now`), in due order (`run_at`, then `seq`), and store each as `running`: an attempt begun at
        `now` (`Job.begin_attempt(None, holder, now)`), `lease_holder = holder`, `lease_until = until`. No job is
        handed to two callers: a job taken by one call is not due for any other until its state changes again."""

    @abc.abstractmethod
    async def save_if_held(self, job: Job, holder: str, children: Sequence[Job] = ()) -> bool:
        """Store `job` (as `save` does, day totals included) only if the stored job is still `running` under
        `holder` in the same attempt (`attempts` equal). False, and nothing written, otherwise. `children` are
        added in the same transaction (as `save_final`) when it is stored."""

    @abc.abstractmethod
    async def expired_leases(self, now: float, limit: int) -> list[Job]:
        """Up to `limit` running QUEUE jobs whose lease ended at or before `now`, earliest lease end first."""

    @abc.abstractmethod
    async def next_lease_end(self) -> float | None:
        """The earliest `lease_until` among running QUEUE jobs, or None: the expiry timer is set for it."""

    @abc.abstractmethod
    async def next_due(self, kind: str) -> float | None:
        """The earliest `run_at` among QUEUE jobs of type `kind` waiting for a lease (`scheduled`, `queued`,
        `retrying`), or None: a lease that waits for work sleeps until then unless woken earlier."""

    @abc.abstractmethod
    async def set_callback_delivery(self, job_id: str, delivery: CallbackDelivery) -> bool:
        """Record how a final job's callback went. Only that field changes: never the status, never the day
        totals; a job that is no longer final (retried from the dead letters) or gone is left alone (False)."""

    # --- batches (SPEC 10.3): a job whose `batch` is set moves its batch's counters in the same write as its final
    # state (`save`, `save_final`, `save_if_held`); the write that brings `pending` to 0 makes the completion owed
    @abc.abstractmethod
    async def add_batch(self, batch: Batch, jobs: Sequence[Job]) -> Batch | str | None:
        """Store the batch and its (new) jobs in one transaction: None when stored; nothing written and the stored
        batch when its id is known, or the first job id already known (a str)."""

    @abc.abstractmethod
    async def get_batch(self, batch_id: str) -> Batch | None: ...

    @abc.abstractmethod
    async def owed_batches(self, now: float, lease: float, limit: int = 20) -> list[str]:
        """Batches whose completion is owed and not being told: held for the caller `lease` seconds (a caller that
        dies lets another take it after that)."""

    @abc.abstractmethod
    async def batch_announced(self, batch_id: str) -> None:
        """The completion was told (its jobs submitted): no longer owed."""

    # --- bulk actions (SPEC 10.4): the record and its matched ids stored once, the progress moved chunk by chunk;
    # an action whose hold runs out (its process stopped) is taken again by `open_actions`
    @abc.abstractmethod
    async def find_ids(self, status: Status | None, match: Callable[[Job], bool]) -> list[str]:
        """Every id of a job (in `status`) that matches, oldest first (by acceptance order)."""

    @abc.abstractmethod
    async def add_action(self, action: Action, ids: Sequence[str], hold_until: float) -> None: ...

    @abc.abstractmethod
    async def get_action(self, action_id: str) -> Action | None: ...

    @abc.abstractmethod
    async def action_ids(self, action_id: str) -> list[str]: ...

    @abc.abstractmethod
    async def action_progress(self, action_id: str, progress: Progress, hold_until: float) -> None:
        """Store how far it got, and hold it for its runner until then (a finished action is no longer open)."""

    @abc.abstractmethod
    async def open_actions(self, now: float, hold: float) -> list[str]:
        """Unfinished actions nobody holds (their hold ran out): held for the caller `hold` seconds."""

    # --- keys and the deployment-wide pause (SPEC 10.1): stored, so they survive restarts and every process sharing
    # the store applies the same ones
    @abc.abstractmethod
    async def controls(self) -> tuple[dict[str, KeyLimits], bool]:
        """Every key's own limits (pause included), and whether the whole deployment is paused."""

    @abc.abstractmethod
    async def set_key(self, key: str, limits: KeyLimits | None) -> None:
        """Store a key's own limits; None (or empty limits) removes them."""

    @abc.abstractmethod
    async def set_paused(self, paused: bool) -> None:
        """Pause or resume the whole deployment."""

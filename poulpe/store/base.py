"""The storage contract every backend meets; tests/store/test_contract.py runs it against each one."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import NamedTuple

from poulpe.job import Job, Status


class Pending(NamedTuple):
    """A job that still has to run, as recovery and the scheduler need it: small, so a million fit in memory."""

    run_at: float
    seq: int
    id: str
    status: Status


class Page(NamedTuple):
    jobs: list[Job]
    total: int


class Store(abc.ABC):
    """Durable job records.

    Guarantees: `add` returns only once the new jobs are durable (the intake acknowledges after it); an id is
    stored once (a second `add` of it returns the stored job, marked duplicate); writes issued by one process
    are applied in the order they were issued.
    """

    kind: str
    shared = False  # True when several processes share the store's schedule (feeds.SharedFeed claims from it)

    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def ping(self) -> bool:
        """True when the store answers: /health."""

    @abc.abstractmethod
    async def add(self, jobs: Sequence[Job]) -> list[tuple[Job, bool]]:
        """Store new jobs durably; for each, (the stored job, True if its id was already known)."""

    @abc.abstractmethod
    async def save(self, job: Job) -> None:
        """Write a job's new state durably. A final state also counts the job in its UTC day's totals."""

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
    async def list_jobs(
        self,
        *,
        status: Status | None = None,
        method: str | None = None,
        name: str | None = None,
        page: int = 1,
        size: int = 50,
    ) -> Page:
        """A page of jobs, newest first (by acceptance order)."""

    @abc.abstractmethod
    async def counts(self) -> dict[str, int]:
        """How many jobs are in each status."""

    @abc.abstractmethod
    async def day_counts(self, day: str) -> dict[str, int]:
        """{"succeeded": n, "failed": n} for a UTC day `YYYY-MM-DD` (kept as jobs finish, not by scanning)."""

    @abc.abstractmethod
    async def purge(self, finished_before: float) -> int:
        """Forget final jobs that finished before this time (--result_ttl); how many went."""

    @abc.abstractmethod
    async def max_seq(self) -> int:
        """The highest acceptance number stored: a restarted process counts on from it."""

"""The storage contract of bursts and windows (SPEC 10.2), run against every backend: start deadlines found again
after a restart, unique windows, debounce windows."""

from __future__ import annotations

from poulpe.job import Status
from poulpe.store.base import Store
from tests.store.test_contract import make, store

__all__ = ["store"]  # the backend fixture, SQLite and Redis


async def test_the_deadlines_of_jobs_waiting_for_their_first_attempt_are_found_again(store: Store) -> None:
    await store.add(
        [
            make("d-waits", 1, deadline=100.0),
            make("d-scheduled", 2, deadline=50.0, status=Status.SCHEDULED, run_at=10.0),
            make("no-deadline", 3),
            make("d-retrying", 4, deadline=100.0, status=Status.RETRYING, attempts=1),
            make("d-done", 5, deadline=100.0, status=Status.SUCCEEDED, finished_at=1.0),
        ]
    )
    assert sorted(await store.deadlines()) == [(50.0, 2, "d-scheduled"), (100.0, 1, "d-waits")]

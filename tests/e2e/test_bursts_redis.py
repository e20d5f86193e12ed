"""Bursts and windows (SPEC 10.2) on three poulpe processes sharing one real Redis, submissions spread over them:
the stories of tests/e2e/test_bursts.py, and what a kill -9 of one process leaves."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.e2e import test_bursts as stories
from tests.e2e.test_keys_redis import clients
from tests.e2e.test_redis_shared import on_redis
from tests.poulpe_process import Poulpe
from tests.redis_server import RedisServer
from tests.started import Started
from tests.target import Target

Start = Callable[..., Poulpe]


@pytest.fixture(scope="module")
def trio(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Poulpe]]:
    """Three processes on one Redis namespace, shared by the module's stories (each uses keys of its own); a story
    that kills one restarts it."""
    started = Started(Poulpe, tmp_path_factory.mktemp("bursts-redis"))
    flags = on_redis(redis_server, "bursts:", "--workers", "4")
    yield started.many(*flags, homes=["p0", "p1", "p2"])
    started.stop_all()


def test_a_job_held_by_a_paused_key_ends_dead_at_its_deadline(trio: list[Poulpe], fresh_target: Target) -> None:
    with clients(trio) as spread:
        stories.deadline_of_a_paused_key_ends_the_job(spread, [p.home / "dead" for p in trio], fresh_target)


def test_retries_stop_once_their_wall_clock_budget_is_spent(trio: list[Poulpe], fresh_target: Target) -> None:
    with clients(trio) as spread:
        stories.retry_budget_ends_an_always_failing_job(spread, fresh_target)


def test_a_unique_window_is_one_for_three_processes(trio: list[Poulpe], fresh_target: Target) -> None:
    with clients(trio) as spread:
        stories.unique_window_makes_one_job_then_a_new_one(spread, fresh_target)


def test_a_unique_window_holds_across_a_kill_9_of_the_process_that_opened_it(
    trio: list[Poulpe], fresh_target: Target
) -> None:
    def restart() -> None:
        trio[0].kill()
        trio[0].restart()

    stories.unique_window_outlives_a_kill_9(
        lambda n: httpx.Client(base_url=trio[n].url, timeout=30), restart, fresh_target
    )


def test_a_burst_of_50_debounced_submissions_over_three_processes_runs_once(
    trio: list[Poulpe], fresh_target: Target
) -> None:
    with clients(trio) as spread:
        stories.burst_of_50_runs_once_with_the_last_payload(spread, fresh_target)


def test_a_steady_stream_over_three_processes_runs_within_max_wait(trio: list[Poulpe], fresh_target: Target) -> None:
    with clients(trio) as spread:
        stories.steady_stream_runs_within_max_wait(spread, fresh_target)


def test_a_debounce_window_outlives_a_kill_9_of_the_process_that_opened_it(
    trio: list[Poulpe], fresh_target: Target
) -> None:
    def restart() -> None:
        trio[0].kill()
        trio[0].restart()

    stories.debounce_outlives_a_kill_9(lambda n: httpx.Client(base_url=trio[n].url, timeout=30), restart, fresh_target)


def test_debounce_replaces_a_job_held_by_a_paused_key(trio: list[Poulpe], fresh_target: Target) -> None:
    with clients(trio) as spread:
        stories.debounce_replaces_a_job_held_by_a_paused_key(spread, fresh_target)

"""Workers and `cc`: a job with `cc` runs only on the workers it names, so `cc` bounds its concurrency."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.helpers import result, submit
from tests.serving import ServedPoulpe
from tests.target import Target


@pytest.fixture(scope="module")
def four_workers(module_served: Callable[..., ServedPoulpe]) -> ServedPoulpe:
    return module_served("--workers", "4")


@pytest.fixture
def client(four_workers: ServedPoulpe) -> Iterator[httpx.Client]:
    with four_workers.client() as client:
        yield client


def run_slow_batch(client: httpx.Client, target: Target, key: str, cc: str | None) -> list[dict[str, Any]]:
    """8 jobs of 250 ms on the slow route, sent as one batch so that they are all due at once; their results."""
    extra = {} if cc is None else {"cc": cc}
    jobs = [
        {"id": f"{key}-{n}", "method": "GET", "name": target.url("/slow", ms=250, key=key), **extra} for n in range(8)
    ]
    answer = client.post("/task_in_queue", json=jobs)
    assert answer.status_code == 202, answer.text
    done = [result(client, job["id"]) for job in jobs]
    assert [job["status"] for job in done] == ["succeeded"] * 8
    return done


def workers_used(done: list[dict[str, Any]]) -> set[int]:
    return {attempt["worker"] for job in done for attempt in job["history"]}


def test_cc_with_one_worker_runs_one_at_a_time(client: httpx.Client, fresh_target: Target) -> None:
    done = run_slow_batch(client, fresh_target, "one", "1")
    assert fresh_target.max_concurrency("one") == 1
    assert workers_used(done) == {1}


def test_cc_with_two_workers_runs_two_at_a_time(client: httpx.Client, fresh_target: Target) -> None:
    done = run_slow_batch(client, fresh_target, "two", "0 2")
    assert fresh_target.max_concurrency("two") == 2
    assert workers_used(done) == {0, 2}


def test_cc_with_commas_and_repeats(client: httpx.Client, fresh_target: Target) -> None:
    done = run_slow_batch(client, fresh_target, "commas", "3,1, 3")
    assert fresh_target.max_concurrency("commas") == 2
    assert workers_used(done) == {1, 3}


def test_without_cc_every_worker_takes_jobs(client: httpx.Client, fresh_target: Target) -> None:
    done = run_slow_batch(client, fresh_target, "all", None)
    assert fresh_target.max_concurrency("all") == 4
    assert workers_used(done) == {0, 1, 2, 3}


def test_a_busy_cc_group_does_not_hold_other_jobs(client: httpx.Client, fresh_target: Target) -> None:
    slow = [
        {"id": f"busy-{n}", "method": "GET", "name": fresh_target.url("/slow", ms=300, key="busy"), "cc": "0"}
        for n in range(6)
    ]
    assert client.post("/task_in_queue", json=slow).status_code == 202

    quick = submit(client, id="quick", method="GET", name=fresh_target.url("/echo"), wait=20)

    assert quick.status_code == 200
    assert quick.json()["status"] == "succeeded"
    assert quick.json()["history"][0]["worker"] != 0
    # the quick job was done while the cc group still had work waiting
    assert client.get("/jobs/busy-5").json()["status"] in ("queued", "running")
    for job in slow:
        assert result(client, str(job["id"]))["status"] == "succeeded"


@pytest.mark.parametrize("cc", ["4", "0 4", "-1", "one", "1.5"])
def test_cc_naming_a_worker_that_does_not_exist_is_refused(client: httpx.Client, target: Target, cc: str) -> None:
    answer = submit(client, method="GET", name=target.url("/echo"), cc=cc)
    assert answer.status_code == 400, answer.text
    assert answer.json()["field"] == "cc"
    assert answer.json()["result"] == "Fail"

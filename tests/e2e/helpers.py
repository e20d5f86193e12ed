"""What a user of poulpe does over HTTP, in a few words: submit a job, long-poll its result, wait for a condition."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

T = TypeVar("T")


def submit(client: httpx.Client, **job: Any) -> httpx.Response:
    """POST /task_in_queue with one job given as keyword arguments; the answer as it came."""
    return client.post("/task_in_queue", json=job)


def accepted(client: httpx.Client, **job: Any) -> dict[str, Any]:
    """Submit a job that must be accepted (202, `"result": "OK"`); its acknowledgement."""
    answer = submit(client, **job)
    assert answer.status_code == 202, answer.text
    body: dict[str, Any] = answer.json()
    assert body["result"] == "OK", body
    return body


def result(client: httpx.Client, job_id: str, timeout: float = 30) -> dict[str, Any]:
    """Long-poll GET /task_resp/{id} until the job is final; fails the test when it is not final in `timeout` s."""
    answer = client.get(f"/task_resp/{job_id}", params={"timeout": timeout}, timeout=timeout + 10)
    assert answer.status_code == 200, f"job {job_id} not final after {timeout}s: {answer.status_code} {answer.text}"
    body: dict[str, Any] = answer.json()
    return body


def state(client: httpx.Client, job_id: str) -> dict[str, Any]:
    """GET /jobs/{id}: the job's state now."""
    answer = client.get(f"/jobs/{job_id}")
    assert answer.status_code in (200, 202), answer.text
    body: dict[str, Any] = answer.json()
    return body


def eventually(check: Callable[[], T], timeout: float = 15, every: float = 0.05) -> T:
    """Call `check` until it returns something truthy (returned) or `timeout` passes (the test fails)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value: {value!r})")
        time.sleep(every)


def dead_letter_path(dead_dir: Path, job: dict[str, Any]) -> Path:
    """Where SPEC 4.2 puts a dead job's letter: `<dead>/<UTC day of death>/<id>.json`."""
    day = dt.datetime.fromtimestamp(job["finished_at"], dt.UTC).strftime("%Y-%m-%d")
    return dead_dir / day / f"{job['id']}.json"

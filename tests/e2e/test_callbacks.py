"""Callbacks: a final job's result is POSTed to its callback URL, retried by its policy, never changing its status."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from tests.e2e.helpers import accepted, eventually, result, state
from tests.serving import ServedPoulpe
from tests.target import Call, Target


@pytest.fixture(scope="module")
def proc(module_served: Callable[..., ServedPoulpe]) -> ServedPoulpe:
    return module_served("--workers", "2")


def callback_calls(target: Target, job_id: str, path: str) -> list[Call]:
    return [call for call in target.calls_for(job_id) if call.path == path]


def delivery(client: httpx.Client, job_id: str, attempts: int) -> dict[str, object]:
    def recorded() -> dict[str, object] | None:
        found: dict[str, object] = state(client, job_id)["callback_delivery"]
        return found if found["attempts"] == attempts else None

    return eventually(recorded)


def test_the_result_is_posted_once_when_the_job_is_final(client: httpx.Client, target: Target) -> None:
    job_id = accepted(client, method="GET", name=target.url("/echo"), callback=target.url("/status/200"))["id"]
    done = result(client, job_id)
    assert done["status"] == "succeeded"
    record = delivery(client, job_id, 1)
    assert record["status_code"] == 200 and record["error"] is None and record["delivered_at"] is not None
    [call] = callback_calls(target, job_id, "/status/200")
    assert call.method == "POST" and call.headers["Poulpe-Job-Id"] == job_id
    posted = json.loads(call.body)
    assert posted["id"] == job_id and posted["status"] == "succeeded"
    assert posted["result"]["status_code"] == 200


def test_a_failing_callback_is_retried_and_leaves_the_status_alone(client: httpx.Client, target: Target) -> None:
    job_id = accepted(
        client,
        method="GET",
        name=target.url("/status/500"),
        retry={"max": 2, "interval": 0.1},
        callback=target.url("/status/503"),
    )["id"]
    assert result(client, job_id)["status"] == "dead"
    record = delivery(client, job_id, 3)
    assert record["status_code"] == 503 and "503" in str(record["error"]) and record["delivered_at"] is None
    assert len(callback_calls(target, job_id, "/status/503")) == 3
    assert state(client, job_id)["status"] == "dead"


def test_a_callback_that_fails_once_is_delivered_on_its_retry(client: httpx.Client, target: Target) -> None:
    job_id = accepted(
        client,
        method="QUEUE",
        name="cb",
        retry={"max": 3, "interval": 0.1},
        callback=target.url("/flaky/cb-retry", fail=1),
    )["id"]
    client.post("/workers/cb/lease", json={"worker": "w"})
    client.post(f"/jobs/{job_id}/complete", json={"worker": "w", "result": 7})
    record = delivery(client, job_id, 2)
    assert record["status_code"] == 200 and record["error"] is None
    assert len(callback_calls(target, job_id, "/flaky/cb-retry")) == 2
    assert state(client, job_id)["status"] == "succeeded"


def test_a_cancelled_job_calls_back_too(client: httpx.Client, target: Target) -> None:
    job_id = accepted(client, method="GET", name=target.url(), delay=600, callback=target.url("/status/204"))["id"]
    assert client.delete(f"/jobs/{job_id}").status_code == 200
    assert delivery(client, job_id, 1)["status_code"] == 204
    posted = json.loads(callback_calls(target, job_id, "/status/204")[0].body)
    assert posted["status"] == "cancelled"


def test_an_unreachable_callback_is_recorded(client: httpx.Client) -> None:
    job_id = accepted(client, method="QUEUE", name="cb2", retry={"max": 0}, callback="http://127.0.0.1:9/x")["id"]
    client.post("/workers/cb2/lease", json={"worker": "w"})
    client.post(f"/jobs/{job_id}/fail", json={"worker": "w", "error": "no"})
    record = delivery(client, job_id, 1)
    assert record["status_code"] is None and "could not be sent" in str(record["error"])
    assert state(client, job_id)["status"] == "dead"

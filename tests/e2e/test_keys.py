"""Keys, priorities, pauses and run-now (SPEC 10.1) on the embedded store, as a user sees them over HTTP.

poulpe is served in the test's process; the two tests that show a pause surviving a restart kill a subprocess."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.e2e.helpers import accepted, eventually, result, state
from tests.poulpe_process import Poulpe
from tests.serving import ServedPoulpe
from tests.target import Target

Start = Callable[..., Poulpe]
Serve = Callable[..., ServedPoulpe]


@pytest.fixture(scope="module")
def plain(module_served: Serve) -> ServedPoulpe:
    """One poulpe for the bad-input cases: they only need a running poulpe."""
    return module_served()


def batch(client: httpx.Client, jobs: list[dict[str, Any]]) -> list[str]:
    ids = []
    for start in range(0, len(jobs), 1000):
        answer = client.post("/task_in_queue", json=jobs[start : start + 1000])
        assert answer.status_code == 202, answer.text[:300]
        ids += [slot["id"] for slot in answer.json()]
    return ids


def starts(client: httpx.Client, ids: list[str]) -> list[float]:
    return sorted(result(client, job_id)["started_at"] for job_id in ids)


def put_key(client: httpx.Client, key: str, **limits: Any) -> dict[str, Any]:
    answer = client.put(f"/keys/{key}", json=limits)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_a_key_with_a_big_backlog_does_not_delay_another_keys_jobs(served: Serve, fresh_target: Target) -> None:
    p = served("--workers", "4")
    with p.client() as client:
        url = fresh_target.url("/slow", ms=20, key="a")
        batch(client, [{"method": "GET", "name": url, "key": "A"} for _ in range(5000)])
        time.sleep(0.5)  # A's backlog is running: 5,000 x 20 ms on 4 workers is 25 s
        for n in range(5):
            job = accepted(client, method="GET", name=fresh_target.url("/echo"), key="B", id=f"b-{n}")
            done = result(client, job["id"])
            waited = done["started_at"] - done["created_at"]
            assert waited < 1.0, f"B's job {n} waited {waited:.2f}s behind A's backlog"
        assert client.get("/keys/A").json()["waiting"] > 1000  # A's backlog was still there


def test_parallelism_bounds_a_keys_jobs_in_flight(served: Serve, fresh_target: Target) -> None:
    p = served("--workers", "8")
    with p.client() as client:
        assert put_key(client, "pair", parallelism=2)["parallelism"] == 2
        ids = batch(client, [{"method": "GET", "name": fresh_target.url("/slow", ms=300, key="pair"), "key": "pair"}
                             for _ in range(10)])  # fmt: skip
        done = [result(client, job_id) for job_id in ids]
    assert fresh_target.max_concurrency("pair") == 2
    span = max(j["finished_at"] for j in done) - min(j["started_at"] for j in done)
    assert 1.4 <= span < 3.0, f"10 x 300 ms two at a time take about 1.5 s, took {span:.2f}s"


def test_a_rate_spreads_a_keys_starts_over_time(served: Serve, fresh_target: Target) -> None:
    p = served("--workers", "8")
    with p.client() as client:
        put_key(client, "api", rate=5, period=1)
        ids = batch(client, [{"method": "GET", "name": fresh_target.url("/echo"), "key": "api"} for _ in range(15)])
        times = starts(client, ids)
    for i, first in enumerate(times):
        in_window = sum(1 for t in times[i:] if t < first + 1.0)
        assert in_window <= 6, f"{in_window} starts within one second from {first}"
    # a bucket of 5 spent at once, then one start every 0.2 s: the last of 15 about 2 s after the first
    assert 1.5 <= times[-1] - times[0] < 4.5


def test_a_higher_priority_job_starts_before_older_ones(served: Serve, fresh_target: Target) -> None:
    p = served("--workers", "1")
    with p.client() as client:
        busy = accepted(client, method="GET", name=fresh_target.url("/slow", ms=1500))["id"]
        eventually(lambda: state(client, busy)["status"] == "running")
        low = batch(client, [{"method": "GET", "name": fresh_target.url("/echo")} for _ in range(20)])
        urgent = accepted(client, method="GET", name=fresh_target.url("/echo"), priority=10)["id"]
        first_low = min(starts(client, low))
        assert result(client, urgent)["started_at"] < first_low
        assert state(client, urgent)["priority"] == 10


def test_a_paused_key_starts_nothing_until_resumed_and_its_pause_survives_a_restart(
    poulpe: Start, fresh_target: Target
) -> None:
    p = poulpe("--workers", "4")
    with p.client() as client:
        put_key(client, "mail", paused=True)
        held = accepted(client, method="GET", name=fresh_target.url("/echo"), key="mail")["id"]
        other = accepted(client, method="GET", name=fresh_target.url("/echo"), key="web")["id"]
        assert result(client, other)["status"] == "succeeded"  # other keys run
        time.sleep(0.5)
        now = state(client, held)
        assert now["status"] == "queued" and now["held"] == "paused"
    p.restart()
    with p.client() as client:
        assert client.get("/keys/mail").json()["paused"] is True
        time.sleep(0.5)
        assert state(client, held)["held"] == "paused"
        resumed_at = time.time()
        assert put_key(client, "mail", paused=False)["paused"] is False
        done = result(client, held)
        assert done["status"] == "succeeded" and done["started_at"] - resumed_at < 1.0
        assert "held" not in done


def test_pausing_a_key_stops_its_starts_within_a_second_while_running_ones_finish(
    served: Serve, fresh_target: Target
) -> None:
    p = served("--workers", "2")
    with p.client() as client:
        ids = batch(client, [{"method": "GET", "name": fresh_target.url("/slow", ms=400), "key": "k"}
                             for _ in range(10)])  # fmt: skip
        eventually(lambda: state(client, ids[0])["status"] != "queued")
        put_key(client, "k", paused=True)
        paused_at = time.time()
        time.sleep(1.5)
        jobs = [state(client, job_id) for job_id in ids]
        late = [j for j in jobs if j["started_at"] and j["started_at"] > paused_at + 0.05]
        assert late == [], "no job of a paused key starts after the pause"
        assert any(j["status"] == "succeeded" for j in jobs)  # the running ones finished
        assert all(j.get("held") == "paused" for j in jobs if j["status"] == "queued")
        client.delete("/keys/k")  # removes the pause
        assert all(result(client, job_id)["status"] == "succeeded" for job_id in ids)


def test_the_deployment_wide_pause_holds_every_job_and_survives_a_restart(poulpe: Start, fresh_target: Target) -> None:
    p = poulpe()
    with p.client() as client:
        assert client.post("/pause").json() == {"paused": True}
        job_id = accepted(client, method="GET", name=fresh_target.url("/echo"))["id"]  # intake goes on
        time.sleep(0.5)
        assert state(client, job_id)["held"] == "paused"
        assert client.get("/health").json()["paused"] is True
        assert client.get("/sys_info").json()["paused"] is True
    p.restart()
    with p.client() as client:
        assert client.get("/sys_info").json()["paused"] is True
        time.sleep(0.5)
        assert state(client, job_id)["status"] == "queued"
        resumed_at = time.time()
        assert client.post("/resume").json() == {"paused": False}
        assert result(client, job_id)["started_at"] - resumed_at < 1.0
        assert "paused" not in client.get("/health").json()


def test_run_now_starts_a_delayed_job_at_once_and_refuses_a_final_one(served: Serve, fresh_target: Target) -> None:
    p = served()
    with p.client() as client:
        job_id = accepted(client, method="GET", name=fresh_target.url("/echo"), delay=3600)["id"]
        asked = time.time()
        answer = client.post(f"/jobs/{job_id}/run")
        assert answer.status_code == 200 and answer.json()["status"] == "queued"
        done = result(client, job_id)
        assert done["status"] == "succeeded" and done["started_at"] - asked < 1.0
        again = client.post(f"/jobs/{job_id}/run")
        assert again.status_code == 409 and "succeeded" in again.json()["error"]
        assert client.post("/jobs/no-such-job/run").status_code == 404


def test_a_parallelism_change_takes_effect_without_a_restart(served: Serve, fresh_target: Target) -> None:
    p = served("--workers", "8")
    with p.client() as client:
        put_key(client, "grow", parallelism=1)
        ids = batch(client, [{"method": "GET", "name": fresh_target.url("/slow", ms=1000, key="grow"), "key": "grow"}
                             for _ in range(10)])  # fmt: skip
        time.sleep(0.5)
        assert fresh_target.max_concurrency("grow") == 1
        put_key(client, "grow", parallelism=5)
        time.sleep(1.0)
        assert client.get("/keys/grow").json()["running"] == 5
        assert all(result(client, job_id)["status"] == "succeeded" for job_id in ids)
    assert fresh_target.max_concurrency("grow") == 5


def test_default_key_limits_come_from_the_flags(served: Serve, fresh_target: Target) -> None:
    p = served("--workers", "8", "--key_parallelism", "1")
    with p.client() as client:
        ids = batch(client, [{"method": "GET", "name": fresh_target.url("/slow", ms=200, key="dflt"), "key": "d"}
                             for _ in range(4)])  # fmt: skip
        assert all(result(client, job_id)["status"] == "succeeded" for job_id in ids)
        assert client.get("/keys/d").json()["parallelism"] == 1
        keys = client.get("/keys").json()
        assert keys["total"] >= 0 and all("waiting" in k for k in keys["keys"])
    assert fresh_target.max_concurrency("dflt") == 1


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/keys/ok", {"parallelism": -1}, "parallelism"),
        ("/keys/ok", {"parallelism": "two"}, "parallelism"),
        ("/keys/ok", {"rate": -5}, "rate"),
        ("/keys/ok", {"rate": "fast"}, "rate"),
        ("/keys/ok", {"period": 0}, "period"),
        ("/keys/ok", {"paused": "yes"}, "paused"),
        ("/keys/ok", {"burst": 1}, "burst"),
        ("/keys/a b", {"parallelism": 1}, "key"),
    ],
)
def test_bad_limits_are_refused_naming_the_field(
    plain: ServedPoulpe, path: str, body: dict[str, Any], field: str
) -> None:
    with plain.client() as client:
        answer = client.put(path, json=body)
    assert answer.status_code == 400 and answer.json()["field"] == field, answer.text


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"key": "a b"}, "key"),
        ({"priority": 101}, "priority"),
        ({"priority": "high"}, "priority"),
        ({"key": ""}, "key"),
    ],
)
def test_bad_keys_and_priorities_of_a_job_are_refused_naming_the_field(
    plain: ServedPoulpe, extra: dict[str, Any], field: str
) -> None:
    with plain.client() as client:
        answer = client.post("/task_in_queue", json={"method": "GET", "name": "http://127.0.0.1:9/x", **extra})
    assert answer.status_code == 400 and answer.json()["field"] == field, answer.text


def test_cc_still_bounds_concurrency_with_keys_and_priorities_mixed_in(served: Serve, fresh_target: Target) -> None:
    p = served("--workers", "4")
    with p.client() as client:
        jobs = [
            {"method": "GET", "name": fresh_target.url("/slow", ms=300, key="cc-mix"), "cc": "1 2",
             "key": f"k{n % 3}", "priority": n % 4}
            for n in range(8)
        ]  # fmt: skip
        done = [result(client, job_id) for job_id in batch(client, jobs)]
    assert {job["history"][-1]["worker"] for job in done} <= {1, 2}
    assert fresh_target.max_concurrency("cc-mix") == 2

"""Reading jobs back: the state of a job in each status, cancelling, paged lists, result expiry and sys_info."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from tests.e2e.helpers import accepted, eventually, result, state, submit
from tests.serving import ServedPoulpe
from tests.target import Target


@pytest.fixture(scope="module")
def proc(module_served: Callable[..., ServedPoulpe]) -> ServedPoulpe:
    return module_served("--workers", "2")


def running(client: httpx.Client, job_id: str) -> bool:
    return bool(state(client, job_id)["status"] == "running")


def test_a_job_can_be_read_in_each_status(client: httpx.Client, fresh_target: Target) -> None:
    slow = fresh_target.url("/slow", ms=2500)  # long enough to still be running when we look
    accepted(client, id="st-running", method="GET", name=slow, cc="0")
    accepted(client, id="st-queued", method="GET", name=slow, cc="0")
    accepted(client, id="st-scheduled", method="GET", name=fresh_target.url("/echo"), delay=60)
    url = fresh_target.url("/flaky/st-retrying", fail=1)
    accepted(client, id="st-retrying", method="GET", name=url, retry={"max": 1, "interval": 60})
    accepted(client, id="st-succeeded", method="GET", name=fresh_target.url("/echo"), cc="1")
    accepted(client, id="st-dead", method="GET", name=fresh_target.url("/status/500"), cc="1", retry={"max": 0})
    accepted(client, id="st-cancelled", method="GET", name=fresh_target.url("/echo"), delay=60)
    assert client.delete("/jobs/st-cancelled").status_code == 200
    result(client, "st-succeeded")
    result(client, "st-dead")
    eventually(lambda: state(client, "st-retrying")["status"] == "retrying")
    eventually(lambda: running(client, "st-running"))

    for status in ("scheduled", "queued", "running", "retrying", "succeeded", "dead", "cancelled"):
        answer = client.get(f"/jobs/st-{status}")
        assert answer.status_code == (200 if status in ("succeeded", "dead", "cancelled") else 202), status
        job = answer.json()
        assert job["id"] == f"st-{status}"
        assert job["status"] == status
        assert {"id", "method", "name", "status", "attempts", "created_at", "run_at", "started_at", "finished_at",
                "result", "error", "meta", "history"} <= job.keys()  # fmt: skip
        assert (job["finished_at"] is not None) == (status in ("succeeded", "dead", "cancelled"))
    assert client.get("/jobs/st-nobody").status_code == 404
    assert client.get("/jobs/st-nobody").json()["error"]
    for job_id in ("st-queued", "st-scheduled", "st-retrying"):
        assert client.delete(f"/jobs/{job_id}").status_code == 200
    assert result(client, "st-running")["status"] == "succeeded"


def test_cancel_a_scheduled_job_and_it_never_runs(client: httpx.Client, fresh_target: Target) -> None:
    job = accepted(client, id="never-due", method="GET", name=fresh_target.url("/echo"), delay=1)

    answer = client.delete("/jobs/never-due")
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "cancelled"
    done = result(client, "never-due", timeout=1)
    assert done["status"] == "cancelled"
    assert done["attempts"] == 0

    time.sleep(max(0.0, job["run_at"] + 0.5 - time.time()))  # past its due time
    assert fresh_target.calls_for("never-due") == []
    assert state(client, "never-due")["status"] == "cancelled"
    assert client.delete("/jobs/never-due").status_code == 409


def test_cancel_a_queued_job_and_it_never_runs(client: httpx.Client, fresh_target: Target) -> None:
    accepted(client, id="blocker", method="GET", name=fresh_target.url("/slow", ms=1500), cc="0")
    accepted(client, id="behind", method="GET", name=fresh_target.url("/echo"), cc="0")
    eventually(lambda: running(client, "blocker"))
    assert state(client, "behind")["status"] == "queued"

    assert client.delete("/jobs/behind").status_code == 200
    assert result(client, "blocker")["status"] == "succeeded"
    time.sleep(0.5)
    assert fresh_target.calls_for("behind") == []
    assert state(client, "behind")["status"] == "cancelled"


def test_cancel_a_running_job_answers_409_and_it_is_not_retried(client: httpx.Client, fresh_target: Target) -> None:
    url = fresh_target.url("/never")
    accepted(client, id="stuck", method="GET", name=url, timeout=1, retry={"max": 3, "interval": 0.1})
    eventually(lambda: running(client, "stuck"))

    answer = client.delete("/jobs/stuck")
    assert answer.status_code == 409, answer.text
    assert answer.json()["error"]

    done = result(client, "stuck")
    assert done["status"] == "cancelled"  # its attempt failed (timeout): cancelled instead of retried
    assert done["attempts"] == 1
    assert len(fresh_target.calls_for("stuck")) == 1


def test_cancel_a_running_job_that_succeeds_keeps_it_succeeded(client: httpx.Client, fresh_target: Target) -> None:
    accepted(client, id="lucky", method="GET", name=fresh_target.url("/slow", ms=700))
    eventually(lambda: running(client, "lucky"))

    assert client.delete("/jobs/lucky").status_code == 409
    assert result(client, "lucky")["status"] == "succeeded"


def test_cancel_a_final_or_unknown_job(client: httpx.Client, target: Target) -> None:
    done = submit(client, id="finished", method="GET", name=target.url("/echo"), wait=20).json()
    assert done["status"] == "succeeded"

    answer = client.delete("/jobs/finished")
    assert answer.status_code == 409
    assert state(client, "finished")["status"] == "succeeded"
    assert client.delete("/jobs/no-such-job").status_code == 404


def test_jobs_are_listed_newest_first_page_by_page(served: Callable[..., ServedPoulpe], target: Target) -> None:
    with served("--workers", "2").client() as client:
        for n in range(5):
            assert submit(client, id=f"page-{n}", method="GET", name=target.url("/echo"), wait=20).status_code == 200
        submit(client, id="page-dead", method="GET", name=target.url("/status/500"), retry={"max": 0}, wait=20)
        accepted(client, id="page-later", method="POST", name=target.url("/echo"), delay=60)

        first = client.get("/jobs", params={"status": "succeeded", "page": 1, "size": 2}).json()
        second = client.get("/jobs", params={"status": "succeeded", "page": 2, "size": 2}).json()
        third = client.get("/jobs", params={"status": "succeeded", "page": 3, "size": 2}).json()
        beyond = client.get("/jobs", params={"status": "succeeded", "page": 4, "size": 2}).json()
        everything = client.get("/jobs").json()
        scheduled_posts = client.get("/jobs", params={"status": "scheduled", "method": "post"}).json()
        bad = client.get("/jobs", params={"status": "sleeping"})

    assert first["total"] == second["total"] == third["total"] == 5
    assert [job["id"] for job in first["jobs"]] == ["page-4", "page-3"]
    assert [job["id"] for job in second["jobs"]] == ["page-2", "page-1"]
    assert [job["id"] for job in third["jobs"]] == ["page-0"]
    assert beyond["jobs"] == []
    assert all(job["status"] == "succeeded" for job in first["jobs"] + second["jobs"] + third["jobs"])
    assert everything["total"] == 7
    assert everything["jobs"][0]["id"] == "page-later"
    assert [job["id"] for job in scheduled_posts["jobs"]] == ["page-later"]
    assert bad.status_code == 400 and bad.json()["field"] == "status"


def test_results_expire_after_result_ttl(served: Callable[..., ServedPoulpe], target: Target) -> None:
    proc = served("--workers", "2", "--result_ttl", "1")
    with proc.client() as client:
        done = submit(client, id="short-lived", method="GET", name=target.url("/echo"), wait=20)
        assert done.status_code == 200
        dead = submit(client, id="dead-short", method="GET", name=target.url("/status/500"), retry={"max": 0}, wait=20)
        assert dead.json()["status"] == "dead"
        assert client.get("/jobs/short-lived").status_code == 200

        eventually(lambda: client.get("/task_resp/short-lived", params={"timeout": 0}).status_code == 404, timeout=5)
        assert client.get("/jobs/short-lived").status_code == 404
        eventually(lambda: client.get("/jobs/dead-short").status_code == 404, timeout=5)  # it finished a bit later
        # the dead letter stays until someone retries or deletes it, whatever the TTL
        assert client.get("/dead/dead-short").status_code == 200
        # a job that is not final does not expire
        accepted(client, id="still-waiting", method="GET", name=target.url("/echo"), delay=60)
        time.sleep(1.5)
        assert state(client, "still-waiting")["status"] == "scheduled"


SYS_INFO_KEYS = {"version", "uptime_s", "store", "node", "workers", "running", "delayed", "failed", "counts", "today"}


def test_sys_info_shows_workers_queues_and_counts(served: Callable[..., ServedPoulpe], fresh_target: Target) -> None:
    secret = "e2e-token-do-not-print"
    proc = served("--workers", "3", env={"POULPE_TOKEN": secret}, token=secret)
    with proc.client() as client:
        for n in range(3):
            submit(client, id=f"ok-{n}", method="GET", name=fresh_target.url("/echo"), wait=20)
        submit(client, id="bad", method="GET", name=fresh_target.url("/status/500"), retry={"max": 0}, wait=20)
        accepted(client, id="tomorrow", method="GET", name=fresh_target.url("/echo"), delay=3600)
        accepted(client, id="slowjob", method="GET", name=fresh_target.url("/slow", ms=2000), cc="1")
        eventually(lambda: running(client, "slowjob"))
        # counts are read from the store, where the running mark lands a moment after the worker took the job
        eventually(lambda: client.get("/sys_info").json()["counts"]["running"] == 1)

        answer = client.get("/sys_info")
        assert httpx.get(f"{proc.url}/sys_info").status_code == 401

    assert answer.status_code == 200
    info = answer.json()
    assert info.keys() == SYS_INFO_KEYS | {"truncated"}
    assert info["version"]
    assert info["uptime_s"] >= 0
    assert info["store"] == "sqlite"
    assert info["node"].endswith(f":{proc.pid}")
    assert [w["id"] for w in info["workers"]] == [0, 1, 2]
    assert [w["running"] for w in info["workers"]] == [None, "slowjob", None]
    assert all(w["queue"] == 0 for w in info["workers"])
    assert info["running"] == ["slowjob"]
    assert info["delayed"] == ["tomorrow"]
    assert info["failed"] == ["bad"]
    assert info["truncated"] is False
    assert info["counts"] == {
        "scheduled": 1,
        "queued": 0,
        "running": 1,
        "retrying": 0,
        "succeeded": 3,
        "dead": 1,
        "cancelled": 0,
    }
    assert info["today"] == {"succeeded": 3, "failed": 1}
    assert secret not in answer.text


def test_sys_info_counts_a_workers_own_queue(served: Callable[..., ServedPoulpe], fresh_target: Target) -> None:
    proc = served("--workers", "2")
    with proc.client() as client:
        jobs = [
            {"id": f"own-{n}", "method": "GET", "name": fresh_target.url("/slow", ms=1500), "cc": "1"} for n in range(3)
        ]
        assert client.post("/task_in_queue", json=jobs).status_code == 202
        eventually(lambda: running(client, "own-0"))
        eventually(lambda: client.get("/sys_info").json()["counts"]["running"] == 1)
        info = client.get("/sys_info").json()
        assert info["workers"][1] == {"id": 1, "running": "own-0", "queue": 2}
        assert info["workers"][0] == {"id": 0, "running": None, "queue": 0}
        assert info["counts"]["queued"] == 2
        assert info["delayed"] == []  # due jobs waiting for a worker are queued, not delayed

        for job_id in ("own-1", "own-2"):
            assert client.delete(f"/jobs/{job_id}").status_code == 200
        assert client.get("/sys_info").json()["workers"][1]["queue"] == 0
        assert result(client, "own-0")["status"] == "succeeded"
        after = client.get("/sys_info").json()
        assert after["today"] == {"succeeded": 1, "failed": 0}
        assert after["counts"]["cancelled"] == 2

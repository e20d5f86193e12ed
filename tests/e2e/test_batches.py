"""Batches (SPEC 10.3): thousands of jobs submitted at once, and one completion told exactly once."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.e2e.helpers import eventually, result, state
from tests.poulpe_process import Poulpe
from tests.redis_server import RedisServer
from tests.serving import ServedPoulpe
from tests.started import Started
from tests.target import Target


def batch_of(target: Target, batch_id: str, *, n: int = 200, dead_every: int = 10, **extra: Any) -> dict[str, Any]:
    """`n` jobs of which one in `dead_every` fails for good; on_complete POSTs the batch's state to the target."""
    jobs = [
        {
            "id": f"{batch_id}-{i}",
            "method": "GET",
            "name": target.url("/status/500" if i % dead_every == 0 else "/echo"),
        }
        for i in range(n)
    ]
    on_complete = {"method": "POST", "name": target.url("/echo", done=batch_id), "params": "$batch"}
    return {"id": batch_id, "jobs": jobs, "on_complete": on_complete, "callback": target.url("/echo", cb=batch_id),
            **extra}  # fmt: skip


def told(target: Target, batch_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """What the target received of the batch's end: the on_complete calls and the callback calls."""
    done = [json.loads(c.body) for c in target.calls if c.query.get("done") == batch_id]
    callbacks = [json.loads(c.body) for c in target.calls if c.query.get("cb") == batch_id]
    return done, callbacks


def check_told_once(client: httpx.Client, target: Target, batch_id: str) -> None:
    final = eventually(lambda: (s := client.get(f"/batches/{batch_id}").json())["done"] and s, timeout=60)
    assert (final["total"], final["succeeded"], final["dead"], final["pending"]) == (200, 180, 20, 0)
    eventually(lambda: client.get(f"/jobs/{batch_id}.complete").status_code != 404)  # submitted once told
    assert result(client, f"{batch_id}.complete")["status"] == "succeeded"
    assert result(client, f"{batch_id}.callback")["status"] == "succeeded"
    time.sleep(0.5)  # a second telling would have come by now
    done, callbacks = told(target, batch_id)
    assert len(done) == 1 and len(callbacks) == 1
    for body in (done[0], callbacks[0]):
        assert (body["id"], body["total"], body["succeeded"], body["dead"], body["done"]) == (
            batch_id,
            200,
            180,
            20,
            True,
        )


@pytest.fixture
def proc(served: Callable[..., ServedPoulpe]) -> ServedPoulpe:
    return served("--workers", "16", "--max_retry", "0")


def test_a_batch_of_200_with_20_dead_is_told_once(client: httpx.Client, fresh_target: Target) -> None:
    answer = client.post("/batches", json=batch_of(fresh_target, "nightly", labels={"team": "pay"}))
    assert answer.status_code == 202, answer.text
    assert answer.json() == {"id": "nightly", "total": 200}
    assert state(client, "nightly-7")["batch"] == "nightly"
    assert state(client, "nightly-7")["labels"] == {"team": "pay"}
    check_told_once(client, fresh_target, "nightly")
    assert "poulpe_batches_told_total 1.0" in client.get("/metrics").text
    again = client.post("/batches", json=batch_of(fresh_target, "nightly"))
    assert again.status_code == 200 and again.json()["duplicate"] is True  # nothing stored twice


def test_a_batch_is_stored_all_or_nothing(client: httpx.Client, fresh_target: Target) -> None:
    body = batch_of(fresh_target, "broken", n=5)
    body["jobs"][3]["methd"] = "GET"
    answer = client.post("/batches", json=body)
    assert answer.status_code == 400 and answer.json()["field"] == "jobs[3].methd"
    assert client.get("/jobs/broken-0").status_code == 404
    assert client.get("/batches/broken").status_code == 404

    client.post("/task_in_queue", json={"id": "taken-2", "method": "GET", "name": fresh_target.url("/echo")})
    clash = client.post("/batches", json=batch_of(fresh_target, "taken", n=5))
    assert clash.status_code == 409, clash.text
    assert client.get("/jobs/taken-0").status_code == 404 and client.get("/batches/taken").status_code == 404


def test_too_many_jobs_or_a_misplaced_batch_state_are_refused(client: httpx.Client, fresh_target: Target) -> None:
    job = {"method": "GET", "name": fresh_target.url("/echo")}
    big = client.post("/batches", json={"jobs": [job] * 10_001})
    assert big.status_code == 400 and big.json()["field"] == "jobs"
    assert client.post("/batches", json={"jobs": [job] * 10_000}).status_code == 202
    wrong = client.post("/batches", json={"jobs": [job], "on_complete": {**job, "params": "$batch"}})
    assert wrong.status_code == 400 and wrong.json()["field"] == "on_complete.params"


def test_a_batch_is_told_once_across_a_kill(poulpe: Callable[..., Poulpe], fresh_target: Target) -> None:
    p = poulpe("--workers", "4", "--max_retry", "0")
    body = batch_of(fresh_target, "killed")
    body["jobs"] = [{**job, "name": job["name"].replace("/echo", "/slow?ms=20")} for job in body["jobs"]]
    with p.client() as client:
        assert client.post("/batches", json=body).status_code == 202
        eventually(lambda: 20 < client.get("/batches/killed").json()["pending"] < 180, every=0.01)
    p.kill()
    p.start()
    with p.client() as client:
        check_told_once(client, fresh_target, "killed")


def test_three_processes_on_redis_tell_a_batch_once(
    poulpe: Started[Poulpe], redis_server: RedisServer, redis_prefix: str, fresh_target: Target
) -> None:
    flags = ("--redis", redis_server.url, "--redis_prefix", redis_prefix, "--workers", "8", "--max_retry", "0")
    procs = poulpe.many(*flags, homes=["p0", "p1", "p2"])
    with procs[0].client() as client:
        assert client.post("/batches", json=batch_of(fresh_target, "shared")).status_code == 202
    with procs[1].client() as client:
        check_told_once(client, fresh_target, "shared")
    ran = {c.headers["Poulpe-Job-Id"] for c in fresh_target.calls}
    assert len([i for i in ran if i.startswith("shared-")]) == 200


def test_a_batch_is_told_once_when_redis_processes_are_killed(
    poulpe: Started[Poulpe], redis_server: RedisServer, redis_prefix: str, fresh_target: Target
) -> None:
    flags = ("--redis", redis_server.url, "--redis_prefix", redis_prefix, "--workers", "4", "--max_retry", "0",
             "--lease", "2")  # fmt: skip
    procs = poulpe.many(*flags, homes=["p0", "p1", "p2"])
    body = batch_of(fresh_target, "shared-kill")
    body["jobs"] = [{**job, "name": job["name"].replace("/echo", "/slow?ms=20")} for job in body["jobs"]]
    with procs[0].client() as client:
        assert client.post("/batches", json=body).status_code == 202
        eventually(lambda: 20 < client.get("/batches/shared-kill").json()["pending"] < 180, every=0.01)
    procs[0].kill()
    with procs[2].client() as client:
        check_told_once(client, fresh_target, "shared-kill")


def test_a_batch_and_a_chain_over_partitions(
    served: Callable[..., ServedPoulpe], redis_server: RedisServer, redis_prefix: str, fresh_target: Target
) -> None:
    """With --partitions, batches and chains live in the coordinating partition: still told and made once."""
    p = served("--redis", redis_server.url, "--redis_prefix", redis_prefix, "--partitions", "3", "--max_retry", "0",
               "--workers", "16")  # fmt: skip
    with p.client(timeout=60) as client:
        assert client.post("/batches", json=batch_of(fresh_target, "parts")).status_code == 202
        check_told_once(client, fresh_target, "parts")
        child = {"method": "POST", "name": fresh_target.url("/echo"), "params": "$parent"}
        client.post(
            "/task_in_queue", json={"id": "p-parent", "method": "GET", "name": fresh_target.url(), "then": child}
        )
        result(client, "p-parent")
        assert result(client, "p-parent.then.0")["parent"] == "p-parent"

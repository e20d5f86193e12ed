"""Tenants cannot see each other (SPEC 10.7), on SQLite and on Redis: tenant A's token tried on every route of
/openapi.json with tenant B's ids and names gets exactly what an unknown id gets (404, or 403 for a route a tenant
may not call), never one byte of B's data, never a 5xx; and B's jobs are untouched by it."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.helpers import eventually
from tests.redis_server import RedisServer
from tests.serving import ServedPoulpe
from tests.target import Target
from tests.tokens_file import bearer, write_tokens

Start = Callable[..., ServedPoulpe]
MARK = "b-private-7f3e"  # in every one of B's jobs: it must never reach A
HOLES = re.compile(r"\{(\w+)\}")
A_OWN = re.compile(r"(?:tenant:a/|\ba:)[A-Za-z0-9._:@/-]*")


@pytest.fixture(params=["sqlite", "redis"])
def two_teams(
    request: pytest.FixtureRequest, served: Start, tmp_path: Path, redis_server: RedisServer, redis_prefix: str
) -> Iterator[tuple[ServedPoulpe, dict[str, str]]]:
    tokens = write_tokens(
        tmp_path / "tokens.toml",
        a={"scopes": ["admin"], "tenant": "a"},
        b={"scopes": ["admin"], "tenant": "b"},
        a_submit={"scopes": ["submit"], "tenant": "a"},
        operator={"scopes": ["admin"]},
    )
    store = ["--redis", redis_server.url, "--redis_prefix", redis_prefix] if request.param == "redis" else []
    yield served("--tokens", str(tmp_path / "tokens.toml"), "--workers", "2", "--max_retry", "0", *store), tokens


def _b_jobs(proc: ServedPoulpe, token: str, target: Target) -> dict[str, str]:
    """B's jobs: one succeeded, one dead, one scheduled for later, and a batch of one more; their ids, short and
    full."""
    with httpx.Client(base_url=proc.url, headers=bearer(token), timeout=30) as b:
        jobs = [
            {"id": "same", "method": "GET", "name": target.url("/echo", mark=MARK), "meta": {"m": MARK}},
            {"id": "dies", "method": "GET", "name": target.url("/status/500", mark=MARK), "meta": {"m": MARK}},
            {"id": "later", "method": "QUEUE", "name": "resize", "params": MARK, "delay": 3600, "meta": {"m": MARK}},
        ]
        answers = b.post("/task_in_queue", json=jobs).json()
        assert [a["id"] for a in answers] == ["b:same", "b:dies", "b:later"]  # a tenant's namespace
        assert b.get("/task_resp/b:same").json()["status"] == "succeeded"
        assert b.get("/task_resp/dies").json()["status"] == "dead"  # the short form reads the same job
        eventually(lambda: b.get("/dead").json()["total"] == 1)
        batch = {"id": "bq7", "labels": {"m": MARK}, "jobs": [{**jobs[2], "id": "in-bat"}]}
        assert b.post("/batches", json=batch).json() == {"id": "b:bq7", "total": 1}
    return {"same": "b:same", "dies": "b:dies", "later": "b:later", "bq7": "b:bq7", "in-bat": "b:in-bat"}


def test_tenants_cannot_see_each_other(two_teams: tuple[ServedPoulpe, dict[str, str]], fresh_target: Target) -> None:
    proc, tokens = two_teams
    b_ids = _b_jobs(proc, tokens["b"], fresh_target)
    # B's ids, short and full, and its names ("same" is also A's own)
    values = [*b_ids.values(), "dies", "later", "bq7", "in-bat", "tenant:b", "tenant:b/x", "resize"]
    with httpx.Client(base_url=proc.url, headers=bearer(tokens["a"]), timeout=30) as a:
        # A's own job with the same id as B's: its own, not B's, and not a duplicate
        mine = a.post("/task_in_queue", json={"id": "same", "method": "QUEUE", "name": "resize", "delay": 3600})
        assert mine.status_code == 202 and mine.json()["id"] == "a:same"
        operations = [
            (method.upper(), path, op)
            for path, ops in a.get("/openapi.json").json()["paths"].items()
            for method, op in ops.items()
        ]
        seen: list[str] = []

        def check(operation: tuple[str, str, dict[str, Any]], used: str, body: dict[str, Any] | None) -> None:
            method, path, op = operation
            url = HOLES.sub(lambda _: used, path)
            query = {p["name"]: used for p in op.get("parameters", []) if p["in"] == "query" and p["name"] != "timeout"}
            query["timeout"] = "0"
            answer = a.request(method, url, params=query, json=body)
            seen.append(f"{method} {path}")
            assert answer.status_code < 500, answer.text
            echoed = answer.text.replace(used, "ID")  # what A sent may come back in an error; nothing else of B
            mine = A_OWN.sub("A", echoed)  # A's own ids and keys may hold B's names (A named them so)
            assert MARK not in echoed and not any(i in mine for i in b_ids.values()), answer.text[:300]
            creates = op["x-poulpe-scope"] == "submit" and method != "DELETE"  # a new job of A's each time
            if "{" in path and answer.status_code != 403 and not creates:  # the same as an id nobody has
                nobody = "zz" + used
                unknown = a.request(method, HOLES.sub(lambda _: nobody, path), params=query, json=body)
                assert answer.status_code == unknown.status_code, (url, answer.text, unknown.text)
                assert echoed == unknown.text.replace(nobody, "ID")

        bodies = [None, {}, {"worker": "w", "n": 10}, {"paused": True}]

        @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(st.sampled_from(operations), st.sampled_from(values), st.sampled_from(bodies))
        def try_route(operation: tuple[str, str, dict[str, Any]], used: str, body: dict[str, Any] | None) -> None:
            check(operation, used, body)

        for operation in operations:  # every route at least once, B's full id in it; then random ones
            check(operation, b_ids["same"], None)
        try_route()
        assert {f"{m} {p}" for m, p, _ in operations} <= set(seen) | {"GET /health"}
        # listings and counts: A's own only
        listed = a.get("/jobs", params={"size": 1000}).json()
        assert "a:same" in [j["id"] for j in listed["jobs"]] and listed["total"] == len(listed["jobs"])
        assert all(j["id"].startswith("a:") for j in listed["jobs"])
        assert a.get("/dead").json() == {"page": 1, "size": 50, "total": 0, "dead": []}
        info = a.get("/sys_info").json()
        assert sum(info["counts"].values()) == listed["total"] and info["counts"]["succeeded"] == 0
        assert info["failed"] == [] and info["today"] == {"succeeded": 0, "failed": 0}
        metrics = a.get("/metrics").text  # A's own gauges; no counter summing every tenant's jobs
        assert f'poulpe_tenant_jobs{{status="scheduled"}} {info["counts"]["scheduled"]}' in metrics
        assert all(key.startswith("tenant:a") for key in re.findall(r'key="([^"]*)"', metrics))
        assert "_total" not in metrics and "_bucket" not in metrics
        unfinished = sum(info["counts"][s] for s in ("scheduled", "queued", "running", "retrying"))
        assert a.get("/api/v1/task/count/undo").json() == unfinished
    with httpx.Client(base_url=proc.url, headers=bearer(tokens["b"]), timeout=30) as b:  # nothing of B changed
        assert b.get("/jobs/later").json()["status"] == "scheduled"
        assert b.get("/dead/dies").status_code == 200
        assert b.get("/sys_info").json()["today"] == {"succeeded": 1, "failed": 1}
        assert b.get("/jobs").json()["total"] == 4
        assert b.get("/batches/bq7").json()["labels"] == {"m": MARK}
    with httpx.Client(base_url=proc.url, headers=bearer(tokens["operator"]), timeout=30) as operator:
        everything = operator.get("/jobs").json()["total"]  # a token without a tenant sees the whole deployment
        assert everything == listed["total"] + 4


def test_a_tenants_jobs_share_the_workers_by_its_key(
    two_teams: tuple[ServedPoulpe, dict[str, str]], fresh_target: Target
) -> None:
    proc, tokens = two_teams
    with httpx.Client(base_url=proc.url, headers=bearer(tokens["a"]), timeout=30) as a:
        job = a.post("/task_in_queue", json={"method": "QUEUE", "name": "resize", "delay": 60}).json()
        assert a.get(f"/jobs/{job['id']}").json()["key"] == "tenant:a"
        own = a.post("/task_in_queue", json={"method": "QUEUE", "name": "resize", "delay": 60, "key": "shop"}).json()
        assert a.get(f"/jobs/{own['id']}").json()["key"] == "tenant:a/shop"  # its own keys live under its name


async def test_a_tenants_websocket_is_told_only_of_its_own_jobs(
    two_teams: tuple[ServedPoulpe, dict[str, str]], fresh_target: Target
) -> None:
    proc, tokens = two_teams
    url = proc.url.replace("http", "ws") + "/ws_task"
    echo = {"method": "GET", "name": fresh_target.url("/echo")}
    async with websockets.connect(url, additional_headers=bearer(tokens["a"])) as ws:
        await ws.send(json.dumps({**echo, "id": "b:x"}))  # B's namespace, named by A: A's own job
        assert json.loads(await ws.recv()) == {"type": "ack", "id": "a:b:x", "status": "queued"}
        pushed = json.loads(await ws.recv())
        assert (pushed["type"], pushed["id"], pushed["status"]) == ("result", "a:b:x", "succeeded")
        async with httpx.AsyncClient(base_url=proc.url, headers=bearer(tokens["b"]), timeout=30) as b:
            assert (await b.get("/jobs/x")).status_code == 404  # B has no such job
            done = (await b.post("/task_in_queue", json={**echo, "meta": {"m": MARK}, "wait": 10})).json()
            assert done["status"] == "succeeded"
        await ws.send(json.dumps({**echo, "id": "next"}))  # what comes next on A's socket is its own
        assert json.loads(await ws.recv())["id"] == "a:next"
        assert json.loads(await ws.recv())["id"] == "a:next"


def test_a_tenant_sees_and_sets_only_its_own_keys(two_teams: tuple[ServedPoulpe, dict[str, str]]) -> None:
    proc, tokens = two_teams
    with (
        httpx.Client(base_url=proc.url, headers=bearer(tokens["a"]), timeout=30) as a,
        httpx.Client(base_url=proc.url, headers=bearer(tokens["b"]), timeout=30) as b,
    ):
        assert b.put("/keys/tenant:b", json={"parallelism": 3}).json()["key"] == "tenant:b"
        assert a.put("/keys/shop", json={"parallelism": 2}).json()["key"] == "tenant:a/shop"
        assert [k["key"] for k in a.get("/keys").json()["keys"]] == ["tenant:a/shop"]
        theirs = a.get("/keys/tenant:b").json()  # read as one of A's own: a key with no jobs and no limits
        assert theirs["key"] == "tenant:a/tenant:b" and theirs["parallelism"] is None
        a.put("/keys/tenant:b", json={"paused": True})
        assert b.get("/keys/tenant:b").json()["paused"] is False and b.get("/keys/tenant:b").json()["parallelism"] == 3
        assert a.post("/pause").status_code == 403  # the whole deployment's pause is not a tenant's


def test_unique_and_debounce_windows_are_a_tenants_own(
    two_teams: tuple[ServedPoulpe, dict[str, str]], fresh_target: Target
) -> None:
    proc, tokens = two_teams
    job = {"method": "GET", "name": fresh_target.url("/echo"), "delay": 3600}
    ids = {}
    for team in ("a", "b"):
        with httpx.Client(base_url=proc.url, headers=bearer(tokens[team]), timeout=30) as client:
            unique = client.post("/task_in_queue", json={**job, "unique": {"for": 60}})
            debounced = client.post("/task_in_queue", json={**job, "debounce": {"key": "hook", "delay": 60}})
            assert unique.status_code == 202 and debounced.status_code == 202, "the other team's windows are not its"
            again = client.post("/task_in_queue", json={**job, "unique": {"for": 60}})
            assert again.status_code == 200 and again.json()["id"] == unique.json()["id"]
            ids[team] = unique.json()["id"]
    assert ids["a"].startswith("a:") and ids["b"].startswith("b:")

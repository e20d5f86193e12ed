"""A tenant's batches (SPEC 10.3, 10.7): two teams may both name a batch `b1`; each sees only its own, whose jobs and
completion live in its namespace, and a batch counts all its jobs against the token's quotas."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.helpers import eventually, result
from tests.redis_server import RedisServer
from tests.serving import ServedPoulpe
from tests.target import Target
from tests.tokens_file import bearer, write_tokens

Start = Callable[..., ServedPoulpe]
LATER = {"method": "QUEUE", "name": "resize", "delay": 3600}


@pytest.fixture(params=["sqlite", "redis"])
def two_teams(
    request: pytest.FixtureRequest, served: Start, tmp_path: Path, redis_server: RedisServer, redis_prefix: str
) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    tokens = write_tokens(
        tmp_path / "tokens.toml", a={"scopes": ["submit"], "tenant": "a"}, b={"scopes": ["submit"], "tenant": "b"}
    )
    store = ["--redis", redis_server.url, "--redis_prefix", redis_prefix] if request.param == "redis" else []
    proc = served("--tokens", str(tmp_path / "tokens.toml"), "--workers", "2", "--max_retry", "0", *store)
    with (
        httpx.Client(base_url=proc.url, headers=bearer(tokens["a"]), timeout=30) as a,
        httpx.Client(base_url=proc.url, headers=bearer(tokens["b"]), timeout=30) as b,
    ):
        yield a, b


def _batch(target: Target, team: str, **extra: Any) -> dict[str, Any]:
    jobs = [{"id": f"j{i}", "method": "GET", "name": target.url("/echo", team=team)} for i in range(3)]
    on_complete = {"method": "POST", "name": target.url("/echo", done=team), "params": "$batch"}
    return {"id": "b1", "jobs": jobs, "on_complete": on_complete, "callback": target.url("/echo", cb=team), **extra}


def _finished(client: httpx.Client, batch_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        found: dict[str, Any] = client.get(f"/batches/{batch_id}").json()
        return found if found["done"] else None

    final = eventually(done, timeout=30)
    assert final is not None
    return final


def test_two_tenants_each_have_their_own_batch_b1(
    two_teams: tuple[httpx.Client, httpx.Client], fresh_target: Target
) -> None:
    a, b = two_teams
    sent_a = a.post("/batches", json=_batch(fresh_target, "a"))
    assert sent_a.status_code == 202 and sent_a.json() == {"id": "a:b1", "total": 3}, sent_a.text
    report = {**_batch(fresh_target, "b")["on_complete"], "id": "report"}  # B names its on_complete
    sent_b = b.post("/batches", json=_batch(fresh_target, "b", on_complete=report))
    assert sent_b.status_code == 202 and sent_b.json() == {"id": "b:b1", "total": 3}, sent_b.text
    for team, client in (("a", a), ("b", b)):
        final = _finished(client, "b1")
        assert (final["id"], final["total"], final["succeeded"]) == (f"{team}:b1", 3, 3)
        assert client.get(f"/batches/{team}:b1").json()["id"] == f"{team}:b1"  # the full id reads the same batch
        job = client.get("/jobs/j0").json()  # the batch's jobs are the tenant's own
        assert (job["id"], job["key"], job["batch"]) == (f"{team}:j0", f"tenant:{team}", f"{team}:b1")
    # the other tenant's batch and jobs answer exactly as unknown ones
    for client, theirs in ((a, "b:b1"), (b, "a:b1")):
        answer, unknown = client.get(f"/batches/{theirs}"), client.get("/batches/nobody")
        assert answer.status_code == unknown.status_code == 404
        assert answer.text.replace(theirs, "ID") == unknown.text.replace("nobody", "ID")
        assert json.loads(answer.text)["error"] == f"no batch with id {theirs}"  # the id as sent
        assert client.get(f"/jobs/{theirs[:2]}j0").status_code == 404
    # each on_complete ran once, as its tenant's job
    eventually(lambda: a.get("/jobs/b1.complete").status_code != 404 and b.get("/jobs/report").status_code != 404)
    done_a = result(a, "b1.complete")
    assert (done_a["id"], done_a["status"], done_a["key"]) == ("a:b1.complete", "succeeded", "tenant:a")
    done_b = result(b, "report")
    assert (done_b["id"], done_b["status"], done_b["key"]) == ("b:report", "succeeded", "tenant:b")
    assert result(a, "b1.callback")["key"] == "tenant:a"
    assert b.get("/jobs/a:b1.complete").status_code == 404 and a.get("/jobs/b:report").status_code == 404
    time.sleep(0.5)  # a second telling would have come by now
    for team in ("a", "b"):
        told = [json.loads(c.body) for c in fresh_target.calls if c.query.get("done") == team]
        assert [(t["id"], t["total"]) for t in told] == [(f"{team}:b1", 3)]
        assert len([c for c in fresh_target.calls if c.query.get("cb") == team]) == 1
    # a batch sent again is a duplicate of the tenant's own; one without an id gets one in the namespace
    again = a.post("/batches", json=_batch(fresh_target, "a"))
    assert again.status_code == 200 and again.json()["id"] == "a:b1" and again.json()["duplicate"] is True
    generated = a.post("/batches", json={"jobs": [LATER]}).json()["id"]
    assert generated.startswith("a:") and b.get(f"/batches/{generated}").status_code == 404


def test_a_tenants_batch_counts_all_its_jobs_against_its_quotas(served: Start, tmp_path: Path) -> None:
    tokens = write_tokens(
        tmp_path / "tokens.toml",
        small={"scopes": ["submit"], "tenant": "small", "max_pending": 5},
        rated={"scopes": ["submit"], "tenant": "rated", "rate": 10},
    )
    proc = served("--tokens", str(tmp_path / "tokens.toml"))
    with httpx.Client(base_url=proc.url, headers=bearer(tokens["small"]), timeout=30) as small:
        too_many = small.post("/batches", json={"jobs": [LATER] * 6})
        assert too_many.status_code == 429 and int(too_many.headers["Retry-After"]) >= 1, too_many.text
        assert small.get("/jobs").json()["total"] == 0  # refused whole
        assert small.post("/batches", json={"jobs": [LATER] * 3}).status_code == 202
        assert small.post("/batches", json={"jobs": [LATER] * 3}).status_code == 429  # 3 + 3 > 5
        assert small.post("/task_in_queue", json=[LATER] * 2).status_code == 202
        assert small.post("/batches", json={"jobs": [LATER]}).status_code == 429
    with httpx.Client(base_url=proc.url, headers=bearer(tokens["rated"]), timeout=30) as rated:
        assert rated.post("/batches", json={"jobs": [LATER] * 25}).status_code == 202  # the bucket now owes 15
        after = rated.post("/batches", json={"jobs": [LATER]})
        assert after.status_code == 429 and int(after.headers["Retry-After"]) >= 1, after.text

"""Labels and filters (SPEC 10.4): an operator finds exactly the jobs of one partner, live or dead."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.e2e.helpers import accepted, result, submit
from tests.redis_server import RedisServer
from tests.serving import ServedPoulpe
from tests.target import Target
from tests.tokens_file import bearer, write_tokens


@pytest.fixture(params=["sqlite", "redis"])
def proc(request: pytest.FixtureRequest, served: Callable[..., ServedPoulpe]) -> ServedPoulpe:
    flags: tuple[str, ...] = ("--max_retry", "0")
    if request.param == "redis":
        redis: RedisServer = request.getfixturevalue("redis_server")
        flags += ("--redis", redis.url, "--redis_prefix", request.getfixturevalue("redis_prefix"))
    return served(*flags)


def ids(answer: httpx.Response, field: str) -> list[str]:
    assert answer.status_code == 200, answer.text
    return [item["id"] for item in answer.json()[field]]


def test_dead_jobs_of_one_label_and_only_those(client: httpx.Client, fresh_target: Target) -> None:
    down, up = fresh_target.url("/status/503"), fresh_target.url("/echo")
    jobs = [
        ("pay-1", down, {"team": "pay", "env": "prod"}),
        ("pay-2", down, {"team": "pay"}),
        ("pay-ok", up, {"team": "pay"}),
        ("ops-1", down, {"team": "ops"}),
        ("plain", down, None),
    ]
    for job_id, url, labels in jobs:
        accepted(client, id=job_id, method="GET", name=url, labels=labels)
    for job_id, _, _ in jobs:
        result(client, job_id)

    assert ids(client.get("/dead", params={"label": "team:pay"}), "dead") == ["pay-2", "pay-1"]
    assert ids(client.get("/dead", params=[("label", "team:pay"), ("label", "env:prod")]), "dead") == ["pay-1"]
    assert ids(client.get("/jobs", params={"label": "team:pay"}), "jobs") == ["pay-ok", "pay-2", "pay-1"]
    assert client.get("/jobs/pay-1").json()["labels"] == {"team": "pay", "env": "prod"}
    dead = client.get("/dead", params={"label": "team:pay", "size": 1}).json()
    assert dead["total"] == 2 and dead["dead"][0]["labels"] == {"team": "pay"}
    assert client.get("/dead/pay-1").json()["labels"] == {"team": "pay", "env": "prod"}  # kept in the letter


def test_the_other_filters(client: httpx.Client, fresh_target: Target) -> None:
    before = time.time()
    accepted(client, id="f-a", method="GET", name=fresh_target.url("/status/500"), key="partner")
    accepted(client, id="f-b", method="POST", name=fresh_target.url("/echo"), key="partner")
    accepted(client, id="f-c", method="GET", name=fresh_target.url("/status/404"))
    for job_id in ("f-a", "f-b", "f-c"):
        result(client, job_id)
    after = time.time()

    def listed(**params: object) -> list[str]:
        found = ids(client.get("/jobs", params={"name_prefix": fresh_target.url("/"), **params}), "jobs")
        return [job_id for job_id in found if job_id.startswith("f-")]

    assert listed(key="partner") == ["f-b", "f-a"]
    assert listed(name_prefix=fresh_target.url("/status")) == ["f-c", "f-a"]
    assert listed(error_contains="404") == ["f-c"]
    assert listed(since=before, until=after) == ["f-c", "f-b", "f-a"]
    assert listed(since=after) == []
    assert ids(client.get("/dead", params={"method": "get", "key": "partner"}), "dead") == ["f-a"]


@pytest.mark.parametrize(
    ("params", "field"),
    [({"label": "Team:pay"}, "label"), ({"label": "team"}, "label"), ({"since": "yesterday"}, "since")],
)
def test_bad_filters_are_refused_naming_them(client: httpx.Client, params: dict[str, str], field: str) -> None:
    for route in ("/jobs", "/dead"):
        answer = client.get(route, params=params)
        assert answer.status_code == 400, answer.text
        assert answer.json()["field"] == field


def test_bad_labels_are_refused(client: httpx.Client) -> None:
    job = {"method": "GET", "name": "http://127.0.0.1:1/"}
    assert submit(client, **job, labels={"Team": "pay"}).json()["field"] == "labels"
    assert submit(client, **job, labels={f"k{n}": "v" for n in range(17)}).status_code == 400
    assert submit(client, **job, labels={"team": "x" * 257}).status_code == 400


def test_a_tenants_filter_finds_its_own_dead_jobs_only(
    served: Callable[..., ServedPoulpe], tmp_path: Path, fresh_target: Target
) -> None:
    tokens = write_tokens(tmp_path / "tokens.toml", a={"scopes": ["admin"], "tenant": "a"},
                          b={"scopes": ["admin"], "tenant": "b"})  # fmt: skip
    p = served("--tokens", str(tmp_path / "tokens.toml"), "--max_retry", "0")
    for team in ("a", "b"):
        with httpx.Client(base_url=p.url, headers=bearer(tokens[team]), timeout=30) as client:
            accepted(client, id="dies", method="GET", name=fresh_target.url("/status/500"), labels={"team": "pay"})
            result(client, "dies")
    with httpx.Client(base_url=p.url, headers=bearer(tokens["a"]), timeout=30) as a:
        assert ids(a.get("/dead", params={"label": "team:pay"}), "dead") == ["a:dies"]
        assert ids(a.get("/jobs", params={"label": "team:pay"}), "jobs") == ["a:dies"]
        batch = a.post("/batches", json={"jobs": [{"method": "GET", "name": fresh_target.url()}]})
        assert batch.status_code == 202 and batch.json()["id"].startswith("a:")  # its own batch, in its namespace
        assert a.post("/actions", json={"action": "retry"}).status_code == 403

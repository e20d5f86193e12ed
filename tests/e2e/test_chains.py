"""Chains (SPEC 10.3): a job's `then` and `on_failure` children, made once with the parent's final state."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.e2e.helpers import accepted, result, state, submit
from tests.poulpe_process import Poulpe
from tests.redis_server import RedisServer
from tests.serving import ServedPoulpe
from tests.smtp_server import SmtpServer
from tests.started import Started
from tests.target import Target
from tests.tokens_file import bearer, write_tokens


@pytest.fixture
def proc(served: Callable[..., ServedPoulpe], exec_dir: Path) -> ServedPoulpe:
    return served("--workers", "4", "--exec_dir", str(exec_dir), "--max_retry", "0")


def test_then_posts_the_parents_result_to_the_next_target(client: httpx.Client, fresh_target: Target) -> None:
    child = {"method": "POST", "name": fresh_target.url("/echo", step="2"), "params": "$parent"}
    accepted(client, id="order-1", method="POST", name=fresh_target.url("/echo"), params={"n": 1}, then=child)

    assert result(client, "order-1")["status"] == "succeeded"  # its child is stored with its final state
    done = result(client, "order-1.then.0")
    assert done["status"] == "succeeded" and done["parent"] == "order-1"
    parent = state(client, "order-1")
    assert parent["children"] == ["order-1.then.0"]
    [call] = fresh_target.calls_for("order-1.then.0")
    sent = json.loads(call.body)  # the parent's result JSON (SPEC 3.1) is the child's body
    assert sent["id"] == "order-1" and sent["status"] == "succeeded"
    assert json.loads(sent["result"]["body"])["body"] == '{"n":1}'


def test_a_chain_from_http_through_a_program_to_a_mail(
    served: Callable[..., ServedPoulpe], exec_dir: Path, fresh_target: Target
) -> None:
    with SmtpServer() as smtp:
        p = served("--exec_dir", str(exec_dir), "--smtp_server", "127.0.0.1", "--smtp_port", str(smtp.port))
        mail = {"method": "MAIL_TO", "name": "ops@example.com",
                "params": {"from_addr": "poulpe@example.com", "title": "report", "body": "$parent"}}  # fmt: skip
        program = {"method": "EXEC", "name": "echoargs", "params": "$parent", "then": mail}
        with p.client() as client:
            accepted(client, id="report", method="GET", name=fresh_target.url("/echo", token="kiwi-77"), then=program)
            result(client, "report")
            result(client, "report.then.0")
            assert result(client, "report.then.0.then.0")["status"] == "succeeded"
            ran = state(client, "report.then.0")
        [got] = smtp.received
    assert "kiwi-77" in ran["result"]["stdout"]  # the program got the HTTP answer as its argument
    body = got.message.get_payload(decode=True).decode()
    assert json.loads(body)["result"]["stdout"] == ran["result"]["stdout"]  # the mail holds the program's output


def test_on_failure_runs_once_when_the_parent_dies_and_then_never(client: httpx.Client, fresh_target: Target) -> None:
    alarm = {"method": "POST", "name": fresh_target.url("/echo", alarm="1"), "params": "$parent"}
    accepted(client, id="pay-9", method="GET", name=fresh_target.url("/status/500"), then=alarm,
             on_failure=[alarm, {**alarm, "id": "pay-9-page"}])  # fmt: skip

    assert result(client, "pay-9")["status"] == "dead"
    assert result(client, "pay-9.fail.0")["status"] == "succeeded"
    assert result(client, "pay-9-page")["status"] == "succeeded"
    assert state(client, "pay-9")["children"] == ["pay-9.fail.0", "pay-9-page"]
    assert client.get("/jobs/pay-9.then.0").status_code == 404
    assert [c.job_id for c in fresh_target.calls if c.query.get("alarm")].count("pay-9.fail.0") == 1
    assert json.loads(fresh_target.calls_for("pay-9.fail.0")[0].body)["status"] == "dead"


def test_a_cancelled_parent_makes_no_child(client: httpx.Client, fresh_target: Target) -> None:
    child = {"method": "GET", "name": fresh_target.url("/echo")}
    accepted(client, id="later", method="GET", name=fresh_target.url("/echo"), delay=60, then=child,
             on_failure=child)  # fmt: skip
    assert client.delete("/jobs/later").json()["status"] == "cancelled"
    assert "children" not in state(client, "later")
    assert client.get("/jobs/later.then.0").status_code == 404
    assert client.get("/jobs/later.fail.0").status_code == 404


def test_children_nest_ten_deep_and_no_deeper(client: httpx.Client, fresh_target: Target) -> None:
    def chain(depth: int) -> dict[str, object]:
        job: dict[str, object] = {"method": "GET", "name": fresh_target.url("/echo")}
        if depth:
            job["then"] = chain(depth - 1)
        return job

    accepted(client, id="deep", **chain(10))
    for depth in range(10):
        result(client, "deep" + ".then.0" * depth)
    last = "deep" + ".then.0" * 10
    assert result(client, last)["parent"] == "deep" + ".then.0" * 9
    too_deep = submit(client, id="deeper", **chain(11))
    assert too_deep.status_code == 400
    assert too_deep.json()["field"] == "then" + "[0].then" * 10


@pytest.mark.parametrize(
    ("then", "field"),
    [
        ({"methd": "GET", "method": "GET", "name": "http://127.0.0.1:1/"}, "then[0].methd"),
        ([{"method": "GET", "name": "http://127.0.0.1:1/"}, {"method": "GET"}], "then[1].name"),
        ({"method": "POST", "name": "http://127.0.0.1:1/", "meta": {"a": "$parent"}}, "then[0].meta.a"),
        ({"method": "GET", "name": "http://127.0.0.1:1/", "params": "$parent"}, "then[0].params"),
        ({"method": "POST", "name": "$parent"}, "then[0].name"),
        ([{"method": "GET", "name": "http://127.0.0.1:1/"}] * 101, "then"),
    ],
)
def test_bad_children_are_refused_naming_their_path(client: httpx.Client, then: object, field: str) -> None:
    answer = submit(client, method="GET", name="http://127.0.0.1:1/", then=then)
    assert answer.status_code == 400, answer.text
    assert answer.json()["field"] == field


def test_children_are_made_once_however_often_poulpe_is_killed(
    poulpe: Callable[..., Poulpe], fresh_target: Target
) -> None:
    """kill -9 right after parents finish, ten times on the same files: each child exists once, and each ran."""
    p = poulpe("--workers", "8")
    parents: list[str] = []
    for round_ in range(10):
        with p.client() as client:
            ids = [f"k{round_}-{n}" for n in range(20)]
            for job_id in ids:
                child = {"method": "POST", "name": fresh_target.url("/echo"), "params": "$parent"}
                accepted(client, id=job_id, method="GET", name=fresh_target.url("/echo"), then=child)
            parents += ids
            result(client, ids[0])
        p.kill()
        p.start()
    with p.client() as client, ThreadPoolExecutor(8) as pool:

        def check(job_id: str) -> None:
            result(client, job_id)
            assert result(client, f"{job_id}.then.0")["status"] == "succeeded"
            assert state(client, job_id)["children"] == [f"{job_id}.then.0"]

        list(pool.map(check, parents))  # the parents side by side
        total = client.get("/sys_info").json()["counts"]
    assert sum(total.values()) == 2 * len(parents)  # no child twice, none missing
    ran = {call.job_id for call in fresh_target.calls}
    assert {f"{job_id}.then.0" for job_id in parents} <= ran


def test_three_processes_on_redis_make_each_child_once(
    poulpe: Started[Poulpe], redis_server: RedisServer, redis_prefix: str, fresh_target: Target
) -> None:
    flags = ("--redis", redis_server.url, "--redis_prefix", redis_prefix, "--workers", "4", "--max_retry", "0")
    procs = poulpe.many(*flags, homes=["p0", "p1", "p2"])
    ids = [f"r-{n}" for n in range(60)]
    with procs[0].client() as client:
        for n, job_id in enumerate(ids):
            target = fresh_target.url("/echo" if n % 2 else "/status/500")
            child = {"method": "POST", "name": fresh_target.url("/echo"), "params": "$parent"}
            accepted(client, id=job_id, method="POST", name=target, then=child, on_failure=child)
    with procs[2].client() as client, ThreadPoolExecutor(8) as pool:

        def check(n: int, job_id: str) -> None:
            child_id = f"{job_id}.then.0" if n % 2 else f"{job_id}.fail.0"
            result(client, job_id)
            done = result(client, child_id)
            assert done["status"] == "succeeded" and done["parent"] == job_id
            assert json.loads(fresh_target.calls_for(child_id)[0].body)["id"] == job_id
            assert state(client, job_id)["children"] == [child_id]

        list(pool.map(check, range(len(ids)), ids))  # the parents side by side
    seen = fresh_target.count_by_job_id()
    children = [f"{job_id}.{branch}.0" for job_id in ids for branch in ("then", "fail")]
    assert sorted(seen[child] for child in children) == [0] * len(ids) + [1] * len(ids)  # one of each, once


def test_children_on_redis_are_made_once_when_processes_are_killed(
    poulpe: Started[Poulpe], redis_server: RedisServer, redis_prefix: str, fresh_target: Target
) -> None:
    """kill -9 of the process running the parents, right after the first ends, round after round: the others take
    its jobs back after their lease, and each child exists once and runs."""
    flags = ("--redis", redis_server.url, "--redis_prefix", redis_prefix, "--workers", "4", "--lease", "2")
    procs = poulpe.many(*flags, homes=["p0", "p1", "p2"])
    parents: list[str] = []
    for round_ in range(4):
        victim = procs[round_ % 3]
        with victim.client() as client:
            ids = [f"rk{round_}-{n}" for n in range(10)]
            for job_id in ids:
                child = {"method": "POST", "name": fresh_target.url("/echo"), "params": "$parent"}
                accepted(client, id=job_id, method="GET", name=fresh_target.url("/slow", ms=30), then=child)
            parents += ids
            result(client, ids[0])
        victim.kill()
        victim.start()
    with procs[0].client() as client, ThreadPoolExecutor(8) as pool:

        def check(job_id: str) -> None:
            result(client, job_id)
            assert result(client, f"{job_id}.then.0")["parent"] == job_id
            assert state(client, job_id)["children"] == [f"{job_id}.then.0"]

        list(pool.map(check, parents))  # the parents side by side
        total = client.get("/sys_info").json()["counts"]
    assert sum(total.values()) == 2 * len(parents)
    assert {f"{job_id}.then.0" for job_id in parents} <= {call.job_id for call in fresh_target.calls}


def test_a_tenants_children_stay_in_its_namespace(
    served: Callable[..., ServedPoulpe], tmp_path: Path, fresh_target: Target
) -> None:
    tokens = write_tokens(tmp_path / "tokens.toml", a={"scopes": ["submit"], "tenant": "a"})
    p = served("--tokens", str(tmp_path / "tokens.toml"))
    with httpx.Client(base_url=p.url, headers=bearer(tokens["a"]), timeout=30) as a:
        grandchild = {"id": "b:grand", "method": "GET", "name": fresh_target.url("/echo")}
        child = {"id": "b:steal", "method": "GET", "name": fresh_target.url("/echo"), "then": grandchild}
        accepted(a, id="mine", method="GET", name=fresh_target.url("/echo"), then=[child, {**grandchild, "id": None}])
        result(a, "mine")
        assert state(a, "mine")["children"] == ["a:b:steal", "a:mine.then.1"]  # never in another tenant's ids
        result(a, "a:b:steal")
        assert result(a, "a:b:grand")["parent"] == "a:b:steal"

"""Bulk actions (SPEC 10.4): the partner was down an hour; retry its dead jobs, and only those, each once."""

from __future__ import annotations

import os
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx

from tests.e2e.helpers import eventually, result
from tests.poulpe_process import Poulpe, poulpe_command
from tests.redis_server import RedisServer
from tests.serving import ServedPoulpe
from tests.started import Started
from tests.target import Target


def dead_jobs(client: httpx.Client, target: Target, prefix: str, n: int, labels: dict[str, str]) -> list[str]:
    """`n` jobs that end dead at once (their target answers 500; no retries), submitted as one batch."""
    jobs = [{"id": f"{prefix}-{i}", "method": "GET", "name": target.url("/status/500"), "labels": labels}
            for i in range(n)]  # fmt: skip
    answer = client.post("/batches", json={"id": prefix, "jobs": jobs})
    assert answer.status_code == 202, answer.text
    eventually(lambda: client.get(f"/batches/{prefix}").json()["done"], timeout=60)
    return [job["id"] for job in jobs]


def follow(client: httpx.Client, action_id: str, timeout: float = 60) -> list[dict[str, Any]]:
    """Every distinct state of the action until it finished."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while not seen or not seen[-1]["finished"]:
        assert time.monotonic() < deadline, seen[-1:]
        answer = client.get(f"/actions/{action_id}")
        assert answer.status_code == 200, answer.text
        if not seen or answer.json()["done"] != seen[-1]["done"] or answer.json()["finished"]:
            seen.append(answer.json())
        time.sleep(0.01)
    return seen


# Jobs of the actions cut by a kill: eight chunks of 200 (poulpe/actions.py), so the kill lands well after the first
# chunk and well before the last one, however fast the action goes
CUT = 1500


def calls(target: Target, prefix: str) -> Counter[str]:
    return Counter(c.job_id for c in target.calls if c.job_id and c.job_id.startswith(prefix + "-"))


def test_a_retry_on_a_label_runs_each_of_its_dead_jobs_once_more(
    served: Callable[..., ServedPoulpe], fresh_target: Target
) -> None:
    p = served("--max_retry", "0", "--workers", "16")
    with p.client() as client:
        pay = dead_jobs(client, fresh_target, "pay", 600, {"team": "pay"})
        ops = dead_jobs(client, fresh_target, "ops", 50, {"team": "ops"})
        listed = client.get("/dead", params={"label": "team:pay", "size": 1000}).json()
        assert sorted(item["id"] for item in listed["dead"]) == sorted(pay)

        started = client.post("/actions", json={"action": "retry", "filter": {"label": ["team:pay"]}})
        assert started.status_code == 202, started.text
        assert started.json()["matched"] == 600 and started.json()["action"] == "retry"
        states = follow(client, started.json()["id"])
        assert len(states) > 1 and [s["done"] for s in states] == sorted(s["done"] for s in states)  # progress
        assert (states[-1]["done"], states[-1]["total"], states[-1]["errors"]) == (600, 600, 0)
        assert 'poulpe_action_jobs_total{action="retry",outcome="done"} 600.0' in client.get("/metrics").text
        for job_id in pay[::50]:
            result(client, job_id)
        eventually(lambda: sum(calls(fresh_target, "pay").values()) == 1200)
        assert set(calls(fresh_target, "pay").values()) == {2}  # each ran again exactly once
        assert set(calls(fresh_target, "ops").values()) == {1}  # the other team's were left alone
        assert client.get("/dead", params={"label": "team:ops"}).json()["total"] == len(ops)


def test_a_retry_cut_by_kill_resumes_without_acting_twice(poulpe: Callable[..., Poulpe], fresh_target: Target) -> None:
    p = poulpe("--max_retry", "0", "--workers", "16")
    with p.client() as client:
        pay = dead_jobs(client, fresh_target, "cut", CUT, {"team": "pay"})
        assert client.post("/pause").status_code == 200  # retried jobs wait: no attempt is cut by the kill
        started = client.post("/actions", json={"action": "retry", "filter": {"label": ["team:pay"]}}).json()
        eventually(lambda: 200 <= client.get(f"/actions/{started['id']}").json()["done"] < CUT - 200, every=0.002)
    p.kill()
    p.start()
    with p.client() as client:
        final = follow(client, started["id"])[-1]
        assert (final["done"], final["errors"]) == (CUT, 0)  # resumed: the jobs done before the kill were skipped
        assert client.get("/jobs", params={"label": "team:pay", "status": "queued"}).json()["total"] == CUT
        client.post("/resume")
        eventually(lambda: sum(calls(fresh_target, "cut").values()) == 2 * CUT, timeout=60)
        time.sleep(0.3)
    assert set(calls(fresh_target, "cut").values()) == {2}
    assert len(pay) == CUT


def test_three_processes_on_redis_resume_an_action_a_killed_one_held(
    poulpe: Started[Poulpe], redis_server: RedisServer, redis_prefix: str, fresh_target: Target
) -> None:
    flags = ("--redis", redis_server.url, "--redis_prefix", redis_prefix, "--max_retry", "0", "--lease", "2")
    procs = poulpe.many(*flags, homes=["p0", "p1", "p2"])
    with procs[0].client() as client:
        dead_jobs(client, fresh_target, "red", CUT, {"team": "pay"})
        client.post("/pause")
        started = client.post("/actions", json={"action": "retry", "filter": {"label": ["team:pay"]}}).json()
        assert started["matched"] == CUT
        eventually(lambda: 200 <= client.get(f"/actions/{started['id']}").json()["done"] < CUT - 200, every=0.002)
    procs[0].kill()
    with procs[1].client() as client:
        final = follow(client, started["id"])[-1]
        assert (final["done"], final["errors"]) == (CUT, 0)
        client.post("/resume")
        eventually(lambda: sum(calls(fresh_target, "red").values()) == 2 * CUT, timeout=60)
        time.sleep(0.3)
    assert set(calls(fresh_target, "red").values()) == {2}


def test_dead_retry_from_the_command_line_with_a_label_and_a_date(
    served: Callable[..., ServedPoulpe], fresh_target: Target
) -> None:
    p = served("--max_retry", "0")
    with p.client() as client:
        dead_jobs(client, fresh_target, "cli", 20, {"team": "pay"})
        dead_jobs(client, fresh_target, "other", 5, {"team": "ops"})
    env = {k: v for k, v in os.environ.items() if not k.startswith("POULPE_")} | {"POULPE_URL": p.url}
    done = subprocess.run([*poulpe_command(), "dead", "retry", "--label", "team:pay", "--since", "2026-12-01"],
                          capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "retry of 20 dead jobs" in done.stdout and "20/20 done, 0 errors" in done.stderr
    eventually(lambda: sum(calls(fresh_target, "cli").values()) == 40)
    assert sum(calls(fresh_target, "other").values()) == 5

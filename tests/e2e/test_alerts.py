"""Alerts: an operator's endpoint hears once when a job starts late, runs slow, loses its process, or dies.

poulpe is served in the test's process, but for the lease lost by a process killed with kill -9."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import time
from collections.abc import Callable
from typing import Any

import httpx

from poulpe.alerts import Alerts
from poulpe.dispatch.events import Events
from poulpe.job import Job, Method, Status
from tests.e2e.helpers import accepted, eventually, result, state
from tests.poulpe_process import Poulpe, free_port
from tests.redis_server import RedisServer
from tests.serving import ServedPoulpe
from tests.target import Target

Start = Callable[..., Poulpe]
Serve = Callable[..., ServedPoulpe]
KEY = "alert-signing-key"


def alerts_at(target: Target, hook: str) -> list[dict[str, Any]]:
    """The alerts the target received on /echo?hook=<hook>, in arrival order."""
    return [json.loads(call.body) for call in target.calls if call.path == "/echo" and call.query.get("hook") == hook]


def alerts_view(proc: Poulpe | ServedPoulpe) -> dict[str, Any]:
    with proc.client() as client:
        answer: dict[str, Any] = client.get("/alerts").json()
    return answer


def test_a_job_waiting_behind_a_busy_worker_gives_one_late_alert(served: Serve, fresh_target: Target) -> None:
    hook = fresh_target.url("/echo", hook="late")
    proc = served("--workers", "1", "--late_after", "1", "--alert_url", hook)
    with proc.client() as client:
        busy = accepted(client, method="GET", name=fresh_target.url("/slow", ms=2000))
        waiting = accepted(client, method="GET", name=fresh_target.url("/echo"))
        assert result(client, waiting["id"])["status"] == "succeeded"
        assert result(client, busy["id"])["status"] == "succeeded"
    [alert] = eventually(lambda: alerts_at(fresh_target, "late"))
    assert alert["type"] == "late" and alert["job"]["id"] == waiting["id"]
    assert alert["job"]["started_at"] - alert["job"]["run_at"] > 1
    time.sleep(1)  # nothing more comes: one alert per job and type, none for the job that started on time
    assert len(alerts_at(fresh_target, "late")) == 1
    view = alerts_view(proc)
    assert view["counts"]["late"] == 1 and view["recent"][0]["id"] == waiting["id"]


def test_a_dead_job_gives_one_signed_dead_alert_and_a_counter(served: Serve, fresh_target: Target) -> None:
    hook = fresh_target.url("/echo", hook="dead")
    proc = served("--alert_url", hook, env={"POULPE_SIGNING_KEY": KEY})
    with proc.client() as client:
        job = accepted(client, method="GET", name=fresh_target.url("/status/500"), retry={"max": 1, "interval": 0})
        assert result(client, job["id"])["status"] == "dead"
        [alert] = eventually(lambda: alerts_at(fresh_target, "dead"))
        metrics = client.get("/metrics").text
    assert alert["type"] == "dead" and alert["job"]["id"] == job["id"] and alert["job"]["attempts"] == 2
    [call] = [c for c in fresh_target.calls if c.query.get("hook") == "dead"]
    t, v1 = (part.split("=", 1)[1] for part in call.headers["Poulpe-Signature"].split(","))
    assert v1 == hmac.new(KEY.encode(), f"{t}.{call.body}".encode(), hashlib.sha256).hexdigest()
    assert call.headers["Poulpe-Alert"] == "dead"
    assert 'poulpe_alerts_total{type="dead"} 1.0' in metrics
    assert 'poulpe_alerts_total{type="late"} 0.0' in metrics


def test_an_attempt_running_past_slow_after_gives_one_slow_alert(served: Serve, fresh_target: Target) -> None:
    hook = fresh_target.url("/echo", hook="slow")
    proc = served("--slow_after", "0.5", "--alert_url", hook)
    with proc.client() as client:
        slow = accepted(client, method="GET", name=fresh_target.url("/slow", ms=1500))
        quick = accepted(client, method="GET", name=fresh_target.url("/echo"))
        result(client, slow["id"])
        result(client, quick["id"])
    [alert] = eventually(lambda: alerts_at(fresh_target, "slow"))
    assert alert["job"]["id"] == slow["id"] and alert["job"]["status"] == "running"


def test_an_alert_endpoint_that_is_down_delays_no_job(served: Serve, fresh_target: Target) -> None:
    down = f"http://127.0.0.1:{free_port()}/alerts"  # nothing listens there
    proc = served("--workers", "4", "--alert_url", down)
    with proc.client() as client:
        jobs_run_while_alerts_fail(client, fresh_target)
    view = alerts_view(proc)
    assert view["counts"]["dead"] == 20
    assert view["delivery"]["delivered"] == 0 and view["delivery"]["waiting"] > 0  # still being retried


def test_an_alert_endpoint_that_never_answers_delays_no_job(served: Serve, fresh_target: Target) -> None:
    with socket.create_server(("127.0.0.1", 0), backlog=64) as hole:  # connections are taken, never answered
        proc = served("--workers", "4", "--alert_url", f"http://127.0.0.1:{hole.getsockname()[1]}/alerts")
        with proc.client() as client:
            jobs_run_while_alerts_fail(client, fresh_target)
        view = alerts_view(proc)
    assert view["counts"]["dead"] == 20 and view["delivery"]["delivered"] == 0


def jobs_run_while_alerts_fail(client: httpx.Client, fresh_target: Target) -> None:
    """20 jobs that die (each one raising a `dead` alert), then 20 healthy ones, all final within 10 s."""
    started = time.monotonic()
    ids = [
        accepted(client, method="GET", name=fresh_target.url("/status/500"), retry={"max": 0})["id"] for _ in range(20)
    ]
    assert all(result(client, job_id)["status"] == "dead" for job_id in ids)
    healthy = [accepted(client, method="GET", name=fresh_target.url("/echo"))["id"] for _ in range(20)]
    assert all(result(client, job_id)["status"] == "succeeded" for job_id in healthy)
    took = time.monotonic() - started
    assert took < 10, f"40 jobs took {took:.1f}s while alerts could not be delivered"


def test_a_killed_process_leaves_one_lease_lost_alert_from_the_survivor(
    poulpe: Start, redis_server: RedisServer, redis_prefix: str, fresh_target: Target
) -> None:
    hook = fresh_target.url("/echo", hook="lease")
    flags = ("--redis", redis_server.url, "--redis_prefix", redis_prefix, "--lease", "2", "--alert_url", hook)
    a = poulpe(*flags, "--workers", "1", home="a")
    with a.client() as client:
        # held at the target until a is killed, so still running once b is up however slowly it starts
        job = accepted(client, method="GET", name=fresh_target.url("/hold", gate="lease"))
        eventually(lambda: state(client, job["id"])["status"] == "running")
    b = poulpe(*flags, "--workers", "1", home="b")
    a.kill()
    fresh_target.open("lease")  # the attempt b makes once the lease ran out answers at once
    with b.client() as client:
        done = result(client, job["id"])
    assert done["status"] == "succeeded" and done["attempts"] == 2
    [alert] = eventually(lambda: alerts_at(fresh_target, "lease"))
    assert alert["type"] == "lease_lost" and alert["job"]["id"] == job["id"]
    time.sleep(0.5)
    assert len(alerts_at(fresh_target, "lease")) == 1
    assert alerts_view(b)["counts"]["lease_lost"] == 1


async def test_a_failed_delivery_is_retried_and_each_job_and_type_alerts_once(fresh_target: Target) -> None:
    alerts = Alerts(url=fresh_target.url("/flaky/alert-retry", fail=2), retry_delays=(0.05, 0.05, 0.05))
    alerts.start(Events())
    job = Job(id="j1", method=Method.GET, name="http://127.0.0.1/", status=Status.DEAD)
    try:
        alerts.alert("dead", job)
        alerts.alert("dead", job)  # the same job and type: nothing more
        alerts.alert("late", job)
        await asyncio.sleep(0.1)  # the sender takes both from the queue
    finally:
        await alerts.stop(grace=10)  # deliveries in flight (and their retries) finish
    assert alerts.raised["dead"] == 1 and alerts.raised["late"] == 1
    assert alerts.delivered == 2 and alerts.undelivered == 0
    posts = [c for c in fresh_target.calls if c.path == "/flaky/alert-retry"]
    assert len(posts) == 4  # two refused (500), then both delivered

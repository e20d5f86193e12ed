"""External workers (SPEC 6): QUEUE jobs leased by workers of their type, reported done or failed by the holder."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.e2e.helpers import accepted, dead_letter_path, eventually, result, state
from tests.poulpe_process import Poulpe
from tests.redis_server import RedisServer
from tests.serving import ServedPoulpe

ONE_RETRY = {"max": 1, "interval": 0}


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def proc(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedPoulpe]:
    """One poulpe for the module, on each store, served in the test's process; each test uses task types of its own.
    Restarts, kill -9 and SIGTERM get a process of their own."""
    flags: tuple[str, ...] = ()
    if request.param == "redis":
        redis: RedisServer = request.getfixturevalue("redis_server")
        flags = ("--redis", redis.url, "--redis_prefix", "external:")
    proc = ServedPoulpe(tmp_path_factory.mktemp("external"), *flags).start()
    yield proc
    proc.stop()


@pytest.fixture
def own(tmp_path: Path) -> Iterator[Poulpe]:
    proc = Poulpe(tmp_path / "p").start()
    yield proc
    proc.stop()


def lease(
    client: httpx.Client, kind: str, worker: str, n: int = 1, lease_s: float = 30, wait: float = 0
) -> list[dict[str, object]]:
    body = {"worker": worker, "n": n, "lease_s": lease_s, "wait": wait}
    answer = client.post(f"/workers/{kind}/lease", json=body)
    assert answer.status_code == 200, answer.text
    jobs: list[dict[str, object]] = answer.json()["jobs"]
    return jobs


def test_a_worker_leases_completes_fails_and_lets_a_lease_expire(client: httpx.Client) -> None:
    ids = [
        accepted(client, method="QUEUE", name="resize", params={"image": f"{n}.png"}, retry=ONE_RETRY)["id"]
        for n in range(3)
    ]
    assert client.post("/workers/resize/hello", json={"worker": "w1", "beat_s": 30}).status_code == 200
    first, second = lease(client, "resize", "w1", n=2)
    assert [first["id"], second["id"]] == ids[:2]
    assert first["params"] == {"image": "0.png"} and first["attempt"] == 1
    assert state(client, ids[0])["status"] == "running" and state(client, ids[0])["worker"] == "w1"

    listed = [w for w in client.get("/workers").json()["workers"] if w["type"] == "resize"]
    assert listed == [{"type": "resize", "name": "w1", "last_beat": listed[0]["last_beat"], "jobs": sorted(ids[:2])}]
    assert abs(listed[0]["last_beat"] - time.time()) < 5

    # only the holder reports, and only once
    other = client.post(f"/jobs/{ids[0]}/complete", json={"worker": "w2", "result": 1})
    assert other.status_code == 409 and other.json()["field"] == "worker"
    done = client.post(f"/jobs/{ids[0]}/complete", json={"worker": "w1", "result": {"w": 64}, "remark": "fine"})
    assert done.status_code == 200 and done.json()["status"] == "succeeded"
    assert client.post(f"/jobs/{ids[0]}/complete", json={"worker": "w1", "result": 1}).status_code == 409
    finished = result(client, ids[0])
    assert finished["result"] == {"w": 64} and finished["remark"] == "fine" and finished["attempts"] == 1

    failed = client.post(f"/jobs/{ids[1]}/fail", json={"worker": "w1", "error": "corrupt image"})
    assert failed.status_code == 200 and failed.json()["status"] == "retrying"
    assert failed.json()["error"] == "corrupt image"

    # the third job's lease runs out: it goes back as a failed attempt
    [third] = lease(client, "resize", "w1", lease_s=0.3)
    assert third["id"] == ids[2]
    expired = eventually(lambda: (s := state(client, ids[2]))["status"] == "retrying" and s)
    assert expired["attempts"] == 1 and "ended without a report" in expired["error"]
    assert client.post(f"/jobs/{ids[2]}/complete", json={"worker": "w1"}).status_code == 409  # too late

    # both come back to a worker, and the results wake their long-polls
    again = lease(client, "resize", "w2", n=5)
    assert sorted(job["id"] for job in again) == sorted(ids[1:]) and {job["attempt"] for job in again} == {2}
    for job in again:
        assert client.post(f"/jobs/{job['id']}/complete", json={"worker": "w2", "result": "ok"}).status_code == 200
    assert [result(client, job_id)["status"] for job_id in ids] == ["succeeded"] * 3
    workers = {w["name"]: w for w in client.get("/workers").json()["workers"] if w["type"] == "resize"}
    assert workers["w1"]["jobs"] == [] and workers["w2"]["jobs"] == []


def test_a_job_out_of_attempts_is_dead_with_its_dead_letter(client: httpx.Client, proc: ServedPoulpe) -> None:
    job_id = accepted(client, method="QUEUE", name="mail", params=1, retry={"max": 0})["id"]
    lease(client, "mail", "w1")
    assert client.post(f"/jobs/{job_id}/fail", json={"worker": "w1", "error": "bounced"}).status_code == 200
    dead = result(client, job_id)
    assert dead["status"] == "dead" and dead["error"] == "bounced"
    assert dead_letter_path(proc.home / "dead", dead).exists()


def test_a_worker_that_stops_beating_loses_its_jobs(client: httpx.Client) -> None:
    job_id = accepted(client, method="QUEUE", name="thumbs", retry=ONE_RETRY)["id"]
    assert client.post("/workers/thumbs/hello", json={"worker": "quiet", "beat_s": 0.2}).status_code == 200
    lease(client, "thumbs", "quiet", lease_s=600)
    back = eventually(lambda: (s := state(client, job_id))["status"] == "retrying" and s)
    assert "stopped beating" in back["error"]


def test_heartbeats_keep_a_worker_and_its_lease(client: httpx.Client) -> None:
    job_id = accepted(client, method="QUEUE", name="beats", retry=ONE_RETRY)["id"]
    client.post("/workers/beats/hello", json={"worker": "busy", "beat_s": 0.2})
    lease(client, "beats", "busy", lease_s=600)
    for _ in range(8):
        assert client.post("/workers/beats/heartbeat", json={"worker": "busy"}).status_code == 200
        time.sleep(0.1)
    assert state(client, job_id)["status"] == "running"


def test_a_lease_survives_a_restart_of_poulpe(own: Poulpe) -> None:
    proc = own
    with proc.client() as client:
        job_id = accepted(client, method="QUEUE", name="render", retry=ONE_RETRY)["id"]
        lease(client, "render", "w1", lease_s=600)
    proc.restart()
    with proc.client() as client:
        assert state(client, job_id)["status"] == "running"
        done = client.post(f"/jobs/{job_id}/complete", json={"worker": "w1", "result": "ok"})
        assert done.status_code == 200 and done.json()["attempts"] == 1


def test_a_lease_that_ended_while_poulpe_was_down_returns_the_job(own: Poulpe) -> None:
    proc = own
    with proc.client() as client:
        job_id = accepted(client, method="QUEUE", name="render", retry=ONE_RETRY)["id"]
        lease(client, "render", "w1", lease_s=0.5)
    proc.kill()
    time.sleep(0.6)
    proc.restart()
    with proc.client() as client:
        assert eventually(lambda: state(client, job_id)["status"] == "retrying")


@pytest.mark.parametrize(
    ("path", "body", "status", "field"),
    [
        ("/workers/resize/lease", {}, 400, "worker"),
        ("/workers/resize/lease", {"worker": "w", "n": 0}, 400, "n"),
        ("/workers/resize/lease", {"worker": "w", "n": "2"}, 400, "n"),
        ("/workers/resize/lease", {"worker": "w", "lease_s": -1}, 400, "lease_s"),
        ("/workers/resize/lease", {"worker": "w", "colour": 1}, 400, "colour"),
        ("/workers/re size/lease", {"worker": "w"}, 400, "type"),
        ("/workers/resize/hello", {"worker": ""}, 400, "worker"),
        ("/workers/resize/hello", {"worker": "w", "beat_s": 0}, 400, "beat_s"),
        ("/workers/resize/heartbeat", {"worker": "a\nb"}, 400, "worker"),
        ("/jobs/nope/complete", {"worker": "w"}, 404, None),
        ("/jobs/nope/fail", {"worker": "w", "error": 3}, 400, "error"),
    ],
)
def test_bad_worker_requests_answer_with_the_field(
    client: httpx.Client, path: str, body: object, status: int, field: str | None
) -> None:
    answer = client.post(path, json=body)
    assert answer.status_code == status, answer.text
    assert answer.json()["field"] == field


def test_only_queue_jobs_are_reported_by_workers(client: httpx.Client) -> None:
    job_id = accepted(client, method="GET", name="http://127.0.0.1:9/", delay=600)["id"]
    answer = client.post(f"/jobs/{job_id}/complete", json={"worker": "w"})
    assert answer.status_code == 409 and "QUEUE" in answer.json()["error"]


def test_the_paged_query_filters_by_type_newest_first(client: httpx.Client) -> None:
    ids = [accepted(client, method="QUEUE", name=f"page{n % 2}", params=n)["id"] for n in range(6)]
    lease(client, "page0", "w1")
    first = client.get("/jobs", params={"type": "page0", "size": 2}).json()
    second = client.get("/jobs", params={"type": "page0", "size": 2, "page": 2}).json()
    assert first["total"] == 3
    assert [job["id"] for job in first["jobs"] + second["jobs"]] == [ids[4], ids[2], ids[0]]
    running = client.get("/jobs", params={"type": "page0", "status": "running"}).json()
    assert [job["id"] for job in running["jobs"]] == [ids[0]] and running["jobs"][0]["worker"] == "w1"
    assert client.get("/jobs", params={"type": "page1", "method": "queue"}).json()["total"] == 3
    mixed = client.get("/jobs", params={"type": "page1", "method": "GET"})
    assert mixed.status_code == 400 and mixed.json()["field"] == "type"


def lease_later(client: httpx.Client, kind: str, wait: float) -> tuple[Future[list[dict[str, object]]], float]:
    """A lease that waits for work, sent from another thread; its future and when it was sent."""
    pool = ThreadPoolExecutor(1)
    sent = time.monotonic()
    answer = pool.submit(lambda: lease(client, kind, "waiter", lease_s=30, wait=wait))
    pool.shutdown(wait=False)
    time.sleep(0.2)  # the lease is waiting by now
    return answer, sent


def test_a_waiting_lease_wakes_when_a_job_arrives(client: httpx.Client) -> None:
    answer, _ = lease_later(client, "wake", wait=20)
    assert not answer.done()
    submitted = time.monotonic()
    job_id = accepted(client, method="QUEUE", name="wake")["id"]
    [job] = answer.result(10)
    assert job["id"] == job_id and time.monotonic() - submitted < 2


def test_a_waiting_lease_wakes_when_a_delayed_job_is_due(client: httpx.Client) -> None:
    job_id = accepted(client, method="QUEUE", name="due", delay=0.8)["id"]
    answer, sent = lease_later(client, "due", wait=20)
    [job] = answer.result(10)
    assert job["id"] == job_id and 0.7 < time.monotonic() - sent < 3


def test_a_waiting_lease_with_nothing_to_do_answers_empty_after_its_wait(client: httpx.Client) -> None:
    started = time.monotonic()
    assert lease(client, "idle", "w1", wait=0.5) == []
    assert 0.4 < time.monotonic() - started < 3


def test_a_waiting_lease_does_not_hold_a_shutdown(own: Poulpe) -> None:
    with own.client() as client:
        answer, _ = lease_later(client, "late", wait=120)
        started = time.monotonic()
        assert own.terminate(timeout=20) == 0
        assert answer.result(10) == [] and time.monotonic() - started < 10

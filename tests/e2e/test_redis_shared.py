"""Several poulpe processes on one real Redis share one workload, and stay correct when a process or Redis dies."""

from __future__ import annotations

import contextlib
import itertools
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.e2e.helpers import accepted, eventually, result, state
from tests.poulpe_process import Poulpe
from tests.redis_server import RedisServer, Sentinel
from tests.started import Started
from tests.target import Target

Start = Started[Poulpe]


def on_redis(redis: RedisServer, prefix: str, *flags: str) -> tuple[str, ...]:
    return ("--redis", redis.url, "--redis_prefix", prefix, *flags)


def counts(proc: Poulpe) -> dict[str, int]:
    with proc.client() as client:
        answer: dict[str, int] = client.get("/sys_info").json()["counts"]
    return answer


def ran_on(job: dict[str, object], proc: Poulpe) -> bool:
    history = job["history"]
    assert isinstance(history, list)
    return str(history[-1]["node"]).endswith(f":{proc.proc.pid}")  # type: ignore[union-attr]


def test_three_processes_run_a_thousand_jobs_each_exactly_once(
    poulpe: Start, redis_server: RedisServer, redis_prefix: str, fresh_target: Target
) -> None:
    procs = poulpe.many(*on_redis(redis_server, redis_prefix, "--workers", "8"), homes=["p0", "p1", "p2"])
    ids = [f"rr-{n}" for n in range(1000)]
    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(p.client()) for p in procs]
        for job_id, client in zip(ids, itertools.cycle(clients), strict=False):
            accepted(client, id=job_id, method="GET", name=fresh_target.url("/echo"))
        eventually(lambda: counts(procs[0])["succeeded"] == 1000, timeout=60)
        seen = fresh_target.count_by_job_id()
        assert sorted(seen) == sorted(ids)
        assert set(seen.values()) == {1}  # no job ran twice
        ran_by = {p.proc.pid: 0 for p in procs if p.proc is not None}
        for job_id in ids[:300]:
            node = clients[0].get(f"/jobs/{job_id}").json()["history"][-1]["node"]
            ran_by[int(node.rsplit(":", 1)[1])] += 1
    assert all(ran_by.values()), f"every process took a share: {ran_by}"


def test_a_killed_process_leaves_its_jobs_to_the_other_once_its_lease_runs_out(
    poulpe: Start, redis_server: RedisServer, redis_prefix: str, fresh_target: Target
) -> None:
    flags = on_redis(redis_server, redis_prefix, "--workers", "4", "--lease", "2")
    a, b = poulpe.many(*flags, homes=["a", "b"])
    with a.client() as client:
        # each process holds at most 5: four running, one ready (its prefetch)
        ids = [accepted(client, method="GET", name=fresh_target.url("/slow", ms=1500))["id"] for _ in range(10)]
        eventually(lambda: counts(a)["running"] == 8)
    a.kill()
    with b.client() as client:
        done = [result(client, job_id, timeout=30) for job_id in ids]
    assert all(job["status"] == "succeeded" for job in done)
    taken_back = [job for job in done if job["attempts"] == 2]
    assert len(taken_back) == 5, "the four jobs a was running, and the one it held ready, ran again on b"
    errors = sorted(job["history"][0]["error"] for job in taken_back)
    assert sum("lease ran out" in error for error in errors) == 4, errors
    assert sum("may not have begun" in error for error in errors) == 1, errors  # Redis cannot tell it did not
    assert all(ran_on(job, b) for job in taken_back)


def test_a_long_poll_on_one_process_wakes_when_another_finishes_the_job(
    poulpe: Start, redis_server: RedisServer, redis_prefix: str, fresh_target: Target
) -> None:
    a = poulpe(*on_redis(redis_server, redis_prefix, "--workers", "1"), home="a")
    with a.client() as on_a:
        # a's only worker runs a slow job and a holds one more ready (its prefetch): it takes nothing else for 20 s,
        # however slowly b starts on a loaded machine
        for _ in range(2):
            accepted(on_a, method="GET", name=fresh_target.url("/slow", ms=10000))
        eventually(lambda: counts(a)["running"] == 1)
        b = poulpe(*on_redis(redis_server, redis_prefix, "--workers", "4"), home="b")
        with b.client() as on_b:
            job_id = accepted(on_b, method="GET", name=fresh_target.url("/echo"), delay=0.5)["id"]
            answer = on_a.get(f"/task_resp/{job_id}", params={"timeout": 20})
            woke_at = time.time()
        a.kill()  # its slow jobs would hold its drain for 20 s; nothing more is asked of a
    job = answer.json()
    assert answer.status_code == 200 and job["status"] == "succeeded"
    assert ran_on(job, b)
    assert woke_at - job["finished_at"] < 0.1


def test_two_processes_fire_each_cron_time_once(
    poulpe: Start, redis_server: RedisServer, redis_prefix: str, fresh_target: Target, tmp_path: Path
) -> None:
    cron = tmp_path / "cron_task"
    cron.write_text(f"* * * * * * *  {fresh_target.url('/echo', key='tick')}  GET\n")
    flags = on_redis(redis_server, redis_prefix, "--cron", str(cron))
    poulpe.many(*flags, homes=["a", "b"])
    eventually(lambda: len([call for call in fresh_target.calls if call.query.get("key") == "tick"]) >= 3)
    time.sleep(0.5)  # the other process's run of a fire, had it made one, would have come by now
    ticks = [call for call in fresh_target.calls if call.query.get("key") == "tick"]
    per_fire = fresh_target.count_by_job_id()
    assert all(per_fire[call.job_id] == 1 for call in ticks), per_fire


def test_a_job_with_cc_runs_only_on_the_named_worker_of_the_process_that_takes_it(
    poulpe: Start, redis_server: RedisServer, redis_prefix: str, fresh_target: Target
) -> None:
    flags = on_redis(redis_server, redis_prefix, "--workers", "3")
    a, b = poulpe.many(*flags, homes=["a", "b"])
    with a.client() as client:
        ids = [accepted(client, method="GET", name=fresh_target.url("/echo"), cc="2")["id"] for _ in range(20)]
        jobs = [result(client, job_id) for job_id in ids]
        info = client.get("/sys_info").json()
    assert {job["history"][-1]["worker"] for job in jobs} == {2}
    assert info["store"] == "redis" and len(info["workers"]) == 3
    assert info["counts"]["succeeded"] == 20
    assert b.proc is not None


def test_redis_restarted_during_a_stream_loses_no_acknowledged_job(
    poulpe: Start, tmp_path: Path, fresh_target: Target
) -> None:
    redis = RedisServer(tmp_path / "redis").start()
    try:
        flags = ("--redis", redis.url, "--workers", "4")
        procs = poulpe.many(*flags, homes=["a", "b"])
        acknowledged: list[str] = []
        refused: list[int] = []
        waited: list[float] = []  # answers held while poulpe found out what happened to a write Redis never answered
        stop = threading.Event()

        def stream(proc: Poulpe, tag: str) -> None:
            with proc.client(timeout=10) as client:
                for n in itertools.count():
                    if stop.is_set():
                        return
                    job = {"id": f"{tag}-{n}", "method": "GET", "name": fresh_target.url("/echo")}
                    started = time.monotonic()
                    try:
                        answer = client.post("/task_in_queue", json=job)
                    except httpx.HTTPError:
                        continue
                    if time.monotonic() - started > 0.5:
                        waited.append(time.monotonic() - started)
                    if answer.status_code == 202:
                        acknowledged.append(job["id"])
                    else:
                        assert answer.status_code == 503, answer.text
                        refused.append(answer.status_code)
                    time.sleep(0.005)

        threads = [threading.Thread(target=stream, args=(p, f"s{i}")) for i, p in enumerate(procs)]
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        redis.stop()  # SIGTERM: Redis writes its AOF out and exits
        time.sleep(1.0)
        redis.start()
        time.sleep(1.5)
        stop.set()
        for thread in threads:
            thread.join()
        assert refused or waited, "submissions while Redis was down were refused with 503, or held until it was back"
        assert len(acknowledged) > 100
        with procs[0].client() as client:
            for job_id in acknowledged:
                assert result(client, job_id, timeout=30)["status"] == "succeeded"
    finally:
        redis.stop()


def test_poulpe_finds_its_redis_through_sentinel(
    poulpe: Start, redis_server: RedisServer, redis_prefix: str, fresh_target: Target, tmp_path: Path
) -> None:
    sentinel = Sentinel(tmp_path / "sentinel", redis_server).start()
    try:
        url = f"redis+sentinel://127.0.0.1:{sentinel.port}/mymaster/0"
        proc = poulpe("--redis", url, "--redis_prefix", redis_prefix)
        with proc.client() as client:
            job_id = accepted(client, method="GET", name=fresh_target.url("/echo"))["id"]
            assert result(client, job_id)["status"] == "succeeded"
        assert redis_server.client().exists(f"{{{redis_prefix.rstrip(':')}}}:job:{job_id}")
    finally:
        sentinel.stop()


def test_external_workers_are_served_by_any_process_of_the_namespace(
    poulpe: Start, redis_server: RedisServer, redis_prefix: str
) -> None:
    flags = on_redis(redis_server, redis_prefix)
    a, b = poulpe.many(*flags, homes=["a", "b"])
    with a.client() as on_a, b.client() as on_b, ThreadPoolExecutor(1) as pool:
        # a worker waiting on a wakes when a QUEUE job of its type is submitted to b
        waiting = pool.submit(
            on_a.post, "/workers/thumb/lease", json={"worker": "w1", "n": 1, "lease_s": 0.5, "wait": 20}
        )
        time.sleep(0.5)
        started = time.monotonic()
        job_id = accepted(on_b, method="QUEUE", name="thumb", params={"image": "1.png"}, retry={"max": 1})["id"]
        [leased] = waiting.result(timeout=20).json()["jobs"]
        assert leased["id"] == job_id and time.monotonic() - started < 2
        a.kill()  # the lease was taken on a, which dies: b ends it when it runs out, as a failed attempt
        back = eventually(lambda: (job := state(on_b, job_id))["status"] == "retrying" and job, timeout=10)
        assert "ended without a report" in back["error"]


def test_a_drained_process_gives_back_the_jobs_it_held_ready_at_once(
    poulpe: Start, redis_server: RedisServer, redis_prefix: str, fresh_target: Target
) -> None:
    a = poulpe(*on_redis(redis_server, redis_prefix, "--workers", "1"), home="a")
    with a.client() as on_a:
        # the first runs until a got SIGTERM, so a still holds the second ready however slowly b starts on a loaded
        # machine; the second's own length does not matter
        urls = [fresh_target.url("/hold", gate="drain"), fresh_target.url("/slow", ms=200)]
        ids = [accepted(on_a, method="GET", name=url)["id"] for url in urls]
        eventually(lambda: counts(a)["running"] == 1)  # one running, one held ready by a
        assert state(on_a, ids[0])["status"] == "running"
        b = poulpe(*on_redis(redis_server, redis_prefix, "--workers", "2"), home="b")
        assert a.proc is not None
        a.proc.send_signal(signal.SIGTERM)  # a finishes its attempt, and gives the other job back, not after --lease
        time.sleep(0.2)  # the drain has begun with the attempt still running
        fresh_target.open("drain")
        assert a.proc.wait(30) == 0
    with b.client() as on_b:
        done = [result(on_b, job_id, timeout=30) for job_id in ids]
    assert [job["status"] for job in done] == ["succeeded", "succeeded"]
    assert sum(ran_on(job, b) for job in done) == 1


def test_a_cancel_asked_on_one_process_reaches_the_process_running_the_job(
    poulpe: Start, redis_server: RedisServer, redis_prefix: str, fresh_target: Target
) -> None:
    b = poulpe(*on_redis(redis_server, redis_prefix), home="b")
    with b.client() as on_b:
        # the attempt runs until a has started and asked (6 s at most), then fails: a retry would follow
        failing = fresh_target.url("/hold", gate="cancel", status=500)
        job = {"method": "GET", "name": failing, "timeout": 6, "retry": {"max": 3}}
        job_id = accepted(on_b, **job)["id"]
        eventually(lambda: state(on_b, job_id)["status"] == "running")
        a = poulpe(*on_redis(redis_server, redis_prefix), home="a")
        with a.client() as on_a:
            answer = on_a.delete(f"/jobs/{job_id}")
            assert answer.status_code == 409 and "after this attempt" in answer.json()["error"]
            fresh_target.open("cancel")
            ended = result(on_a, job_id, timeout=20)
    assert ended["status"] == "cancelled" and ended["attempts"] == 1  # not retried: the cancel reached b
    assert ran_on(ended, b)

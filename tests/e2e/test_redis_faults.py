"""Redis killed in the middle of writes, a poulpe process killed in the middle of attempts: what clients and targets
see. Real processes throughout: redis-server, two poulpe processes, the HTTP target counting calls."""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.helpers import accepted, eventually, result
from tests.poulpe_process import Poulpe
from tests.redis_server import RedisServer
from tests.started import Started
from tests.target import Target

Start = Started[Poulpe]
LEASE_TAKEN = "its lease was taken by another process"


@dataclass
class Tally:
    """What the clients saw, kept per logical submission (`key`), each POST of it numbered (`try`)."""

    accepted: dict[str, str] = field(default_factory=dict)  # key -> job id
    plain_503: set[tuple[str, int]] = field(default_factory=set)  # (key, try) answered "not stored"
    unknown: int = 0
    duplicates_after_unknown: int = 0
    transport_errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def submit_like_a_client(client: httpx.Client, target: Target, key: str, tally: Tally) -> None:
    """One logical submission, retried as SPEC 2.3 tells a client: without an id after a plain 503 (nothing was
    stored), with the given id after `"stored": "unknown"`, and with that id from then on (a later plain 503 says
    only that the retry stored nothing: the first try may have)."""
    for attempt in itertools.count():
        job: dict[str, Any] = {"method": "GET", "name": target.url("/echo", key=key, t=attempt), "meta": {"key": key}}
        while True:
            try:
                answer = client.post("/task_in_queue", json=job)
            except httpx.HTTPError:
                with tally.lock:
                    tally.transport_errors += 1
                return
            body = answer.json()
            if answer.status_code in (200, 202):
                with tally.lock:
                    tally.accepted[key] = body["id"]
                    tally.duplicates_after_unknown += bool(body.get("duplicate"))
                return
            assert answer.status_code == 503, answer.text
            time.sleep(0.05)
            if body.get("stored") == "unknown":
                with tally.lock:
                    tally.unknown += 1
                job["id"] = body["id"]  # the same submission again, now safe to repeat
            elif "id" not in job:
                assert "id" not in body
                with tally.lock:
                    tally.plain_503.add((key, attempt))
                break  # nothing was stored: a new POST without an id


def test_redis_killed_mid_writes_no_job_runs_twice_and_no_plain_503_job_runs(
    poulpe: Start, tmp_path: Path, fresh_target: Target
) -> None:
    # every write fsynced before its answer: a kill often lands between Redis storing a job and answering for it
    redis = RedisServer(tmp_path / "redis", fsync="always").start()
    try:
        flags = ("--redis", redis.url, "--workers", "8")
        procs = poulpe.many(*flags, homes=["a", "b"])
        tally = Tally()
        stop = threading.Event()

        def stream(proc: Poulpe, tag: str) -> None:
            with proc.client(timeout=30) as client:
                for n in itertools.count():
                    if stop.is_set():
                        return
                    submit_like_a_client(client, fresh_target, f"{tag}-{n}", tally)

        threads = [threading.Thread(target=stream, args=(p, f"c{i}-{p.port}")) for p in procs for i in range(3)]
        for thread in threads:
            thread.start()
        # SIGKILL, down for a while, restarted on the same port and AOF; once for longer than poulpe waits for a
        # lost reply (5 s), so that some answers are "stored: unknown". The clients caught in a write retry with
        # their ids while Redis is away, so fresh clients join then: their submissions find no connection and get
        # the plain 503 this test checks never runs.
        for down in (0.3, 0.8, 6.0, 0.5):
            time.sleep(1.0)
            redis.kill()
            time.sleep(down)
            if down > 5:
                fresh = [threading.Thread(target=stream, args=(p, f"f-{p.port}")) for p in procs]
                for thread in fresh:
                    thread.start()
                threads += fresh
                eventually(lambda: tally.plain_503, timeout=20)
            redis.start()
        time.sleep(1.0)
        stop.set()
        for thread in threads:
            thread.join()
        with procs[0].client() as client, ThreadPoolExecutor(8) as pool:  # the long-polls side by side
            finals = pool.map(lambda job_id: result(client, job_id, timeout=60)["status"], tally.accepted.values())
            assert set(finals) == {"succeeded"}
        time.sleep(1.0)  # a stray job (stored, yet answered "not stored") would have run by now
        runs = Counter(call.query["key"] for call in fresh_target.calls if "key" in call.query)
        ran_twice = [key for key, n in runs.items() if n > 1]
        plain_503_ran = [
            call.query for call in fresh_target.calls if (call.query["key"], int(call.query["t"])) in tally.plain_503
        ]
        print(
            f"\n{len(tally.accepted)} submissions accepted, {len(tally.plain_503)} plain 503, {tally.unknown} "
            f"'stored: unknown' ({tally.duplicates_after_unknown} retries found the job stored), 4 kills: "
            f"{len(ran_twice)} jobs ran twice, {len(plain_503_ran)} plain-503 jobs ran"
        )
        assert tally.transport_errors == 0
        assert len(tally.accepted) > 200 and tally.plain_503, "the kills happened while clients were submitting"
        assert ran_twice == [], [
            (c.query, c.job_id, c.at) for c in fresh_target.calls if c.query.get("key") in ran_twice
        ]
        assert plain_503_ran == []
        assert set(runs) == set(tally.accepted), "every accepted submission ran, and nothing else did"
    finally:
        redis.stop()


def test_a_process_killed_before_its_running_marks_reach_redis_leaves_new_attempt_numbers(
    poulpe: Start, tmp_path: Path, fresh_target: Target
) -> None:
    redis = RedisServer(tmp_path / "redis").start()
    try:
        flags = ("--redis", redis.url, "--workers", "4", "--lease", "2")
        a = poulpe(*flags, home="a")
        with a.client() as on_a:
            # a holds five: four running, one ready for the first worker that frees up
            ids = [accepted(on_a, method="GET", name=fresh_target.url("/slow", ms=800))["id"] for _ in range(5)]
            eventually(lambda: len(fresh_target.calls) == 4)
            # Redis holds every write back now: the fifth attempt starts, its `running` mark never lands
            redis.client().execute_command("CLIENT", "PAUSE", "4000", "WRITE")
            paused_at = time.time()
            eventually(lambda: len(fresh_target.calls) == 5, timeout=5)
            a.kill()
        redis.client().execute_command("CLIENT", "UNPAUSE")
        b = poulpe(*flags, home="b")
        with b.client() as on_b:
            done = [result(on_b, job_id, timeout=30) for job_id in ids]
            assert all(job["status"] == "succeeded" for job in done)
            late = [c for c in fresh_target.calls if c.attempt == 1 and c.at > paused_at]
            assert late, "an attempt began while its running mark could not be stored"
            for job_id in ids:
                numbers = [call.attempt for call in fresh_target.calls_for(job_id)]
                assert len(numbers) == 2 and len(set(numbers)) == 2, f"job {job_id} repeated an attempt: {numbers}"
            # b then runs a stream of quick jobs, renewing its leases every 2/3 s while they finish
            quick = [accepted(on_b, method="GET", name=fresh_target.url("/echo"))["id"] for _ in range(600)]
            with ThreadPoolExecutor(8) as pool:  # the long-polls side by side
                assert set(pool.map(lambda job_id: result(on_b, job_id)["status"], quick)) == {"succeeded"}
    finally:
        redis.stop()
    assert LEASE_TAKEN not in b.log(), "no lease was taken: jobs that finished are not reported as taken"

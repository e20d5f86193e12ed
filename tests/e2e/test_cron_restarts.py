"""Cron line options across process boundaries (SPEC 10.5): catch-up after poulpe was down, a pause that survives
SIGHUP and a restart, run now, and jitter with two processes on one Redis."""

from __future__ import annotations

import itertools
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from poulpe.cron import parse_cron
from tests.poulpe_process import Poulpe
from tests.redis_server import RedisServer
from tests.started import Started
from tests.target import Call, Target

Start = Started[Poulpe]


def calls(target: Target, key: str) -> list[Call]:
    return [call for call in target.calls if call.query.get("key") == key]


def fire_times(target: Target, key: str) -> list[int]:
    """The fire time in each call's job id, in the order the calls came."""
    return [int((call.job_id or "").rsplit(":", 1)[1]) for call in calls(target, key)]


def wait_for(check: Callable[[], bool], timeout: float, every: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(every)
    return check()


def test_catchup_replays_each_fire_missed_while_down_once_oldest_first(
    poulpe: Start, fresh_target: Target, tmp_path: Path
) -> None:
    cron = tmp_path / "cron_task"
    cron.write_text(
        f"[catchup=60] */2 * * * * * *  {fresh_target.url('/echo', key='catchup')}  GET\n"
        f"*/2 * * * * * *  {fresh_target.url('/echo', key='plain')}  GET\n"
    )
    p = poulpe("--cron", str(cron), "--workers", "1")  # one worker: fires start in the order they are due
    assert wait_for(lambda: len(calls(fresh_target, "catchup")) >= 1, 10)  # a last fire is stored
    p.stop()  # SIGTERM: a clean stop; nothing runs for 7 s
    stopped = time.time()
    time.sleep(7)
    p.start()
    restarted = time.time()
    assert wait_for(lambda: any(t > restarted for t in fire_times(fresh_target, "catchup")), 10)
    time.sleep(0.5)
    fires = fire_times(fresh_target, "catchup")
    assert len(fires) == len(set(fires)), "a fire ran twice"
    assert fires == sorted(fires), "missed fires ran out of order"
    assert fires == list(range(fires[0], fires[-1] + 1, 2)), "a missed fire was not replayed"
    missed = [t for t in fires if stopped < t < restarted - 0.5]
    assert len(missed) >= 3
    plain = fire_times(fresh_target, "plain")
    assert not [t for t in plain if stopped < t < restarted - 0.5], "a line without catchup replayed a fire"
    assert "catching up" in p.log()


def test_run_now_pause_resume_and_a_pause_that_survives_sighup_and_a_restart(
    poulpe: Start, fresh_target: Target, tmp_path: Path
) -> None:
    cron = tmp_path / "cron_task"
    cron.write_text(
        f"* * * * * * *  {fresh_target.url('/echo', key='tick')}  GET\n"
        f"0 0 0 1 1 * 2099  {fresh_target.url('/echo', key='yearly')}  GET\n"
    )
    tick, yearly = (line.fingerprint for line in parse_cron(cron.read_text()))
    p = poulpe("--cron", str(cron))
    with p.client() as client:
        asked = time.monotonic()
        ran = client.post(f"/cron/{yearly}/run")
        assert ran.status_code == 202 and ran.json()["id"].startswith(f"cron:{yearly}:run:")
        assert wait_for(lambda: len(calls(fresh_target, "yearly")) == 1, 1.0), "run now took over 1 s"
        assert time.monotonic() - asked < 1.0
        assert wait_for(lambda: line_view(client, yearly)["last"] == {"id": ran.json()["id"], "status": "succeeded"}, 2)

        assert client.put(f"/cron/{tick}", json={"paused": True}).json()["paused"] is True
        paused_at = time.time()
        assert quiet(fresh_target, "tick", since=paused_at + 1.0, seconds=1.5), "the paused line fired"

    assert p.proc is not None
    p.proc.send_signal(signal.SIGHUP)  # the same file again: the pause stays
    time.sleep(0.5)
    assert quiet(fresh_target, "tick", since=time.time(), seconds=1.5), "the pause was lost on SIGHUP"
    p.restart()  # kill -9 and start: the pause is stored
    with p.client() as client:
        assert line_view(client, tick)["paused"] is True
        assert quiet(fresh_target, "tick", since=time.time(), seconds=1.5), "the pause was lost on restart"
        resumed = time.time()
        assert client.put(f"/cron/{tick}", json={"paused": False}).json()["paused"] is False
        assert wait_for(lambda: any(c.at > resumed for c in calls(fresh_target, "tick")), 2.0)
        first = min(c.at for c in calls(fresh_target, "tick") if c.at > resumed)
        assert first - resumed < 1.2, "the first fire after resume came late"
    cron.write_text(cron.read_text().replace("key=tick", "key=tick2"))  # a changed line is a new, running line
    assert wait_for(lambda: len(calls(fresh_target, "tick2")) >= 1, 5)


def line_view(client: httpx.Client, fp: str) -> dict[str, object]:
    lines = client.get("/cron").json()["lines"]
    found: dict[str, object] = next(line for line in lines if line["id"] == fp)
    return found


def quiet(target: Target, key: str, *, since: float, seconds: float) -> bool:
    time.sleep(max(0.0, since + seconds - time.time()))
    return not [c for c in calls(target, key) if c.at > since]


def on_redis(redis: RedisServer, prefix: str, *flags: str) -> tuple[str, ...]:
    return ("--redis", redis.url, "--redis_prefix", prefix, *flags)


def test_jitter_delays_each_fire_by_the_same_amount_on_every_process_and_fires_once(
    poulpe: Start, redis_server: RedisServer, redis_prefix: str, fresh_target: Target, tmp_path: Path
) -> None:
    cron = tmp_path / "cron_task"
    cron.write_text(f"[jitter=2] * * * * * * *  {fresh_target.url('/echo', key='jitter')}  GET\n")
    (line,) = parse_cron(cron.read_text())
    a, b = poulpe.many(*on_redis(redis_server, redis_prefix, "--cron", str(cron)), homes=["a", "b"])
    with a.client() as client:

        def fired() -> tuple[list[Call], list[dict[str, Any]]]:
            got = calls(fresh_target, "jitter")
            return got, [client.get(f"/jobs/{call.job_id}").json() for call in got]

        def four_fires_on_both() -> bool:
            got, jobs = fired()
            return len(got) >= 4 and len(nodes(jobs)) == 2

        # until both processes ran some of at least 4 fires (about 6 s on a quiet machine), then all is checked
        assert wait_for(four_fires_on_both, 20, every=0.2)
        got, jobs = fired()
        ids = [call.job_id or "" for call in got]
    a.stop()
    b.stop()
    for job in jobs:  # the delay stored with the job is the one derived from its id, whoever submitted it
        assert job["run_at"] == int(job["id"].rsplit(":", 1)[1]) + line.jitter(job["id"])
    assert len(nodes(jobs)) == 2, "one process ran every fire"
    assert len(got) >= 4 and len(ids) == len(set(ids)), "a fire ran twice"
    for call in got:
        fire = int(ids[got.index(call)].rsplit(":", 1)[1])
        delay = line.jitter(call.job_id or "")
        assert 0 <= delay <= 2
        assert delay - 0.05 <= call.at - fire <= delay + 0.5, (call.job_id, call.at - fire, delay)
    delays = {round(line.jitter(i), 1) for i in ids}
    assert len(delays) > 1, "every fire had the same delay: that is no spread"


def nodes(jobs: list[dict[str, Any]]) -> set[str]:
    """The processes that ran these jobs' last attempts."""
    return {job["history"][-1]["node"] for job in jobs if job.get("history")}


def test_catchup_on_redis_replays_only_what_no_process_fired(
    poulpe: Start, redis_server: RedisServer, redis_prefix: str, fresh_target: Target, tmp_path: Path
) -> None:
    cron = tmp_path / "cron_task"
    cron.write_text(f"[catchup=60] * * * * * * *  {fresh_target.url('/echo', key='shared')}  GET\n")
    flags = on_redis(redis_server, redis_prefix, "--cron", str(cron))
    a, b = poulpe.many(*flags, homes=["a", "b"])
    assert wait_for(lambda: len(calls(fresh_target, "shared")) >= 1, 10)  # a last fire is stored
    b.stop()  # a keeps firing meanwhile: b's restart has nothing to replay
    time.sleep(2)
    b.start()
    time.sleep(1)
    a.stop()
    b.stop()  # both down now: the next start replays what no one fired
    stopped = time.time()
    time.sleep(3)
    b.start()
    restarted = time.time()
    assert wait_for(lambda: any(t > restarted for t in fire_times(fresh_target, "shared")), 10)
    # Every second from the first fire on: fired by a process, or replayed by the start that found it missed. The
    # order of arrival is not checked, nor is all of it there at once: the replayed fires and the first new ones run
    # on several workers together, so on a busy machine a new fire's call may reach the target before an older
    # replayed one's (one worker keeps them in order: the catch-up test on SQLite above).
    replayed = wait_for(lambda: every_second(fire_times(fresh_target, "shared")), 10)
    fires = fire_times(fresh_target, "shared")
    assert replayed, f"a missed fire was not replayed: {sorted(set(fires))}, down from {stopped:.1f} to {restarted:.1f}"
    time.sleep(0.5)
    fires = fire_times(fresh_target, "shared")
    assert len(fires) == len(set(fires)), "a fire ran twice"
    assert len([t for t in fires if stopped < t < restarted - 0.5]) >= 2, "no fire was missed while both were down"


def every_second(fires: list[int]) -> bool:
    """Each second from the first fire to the last has its fire."""
    return set(fires) == set(range(min(fires), max(fires) + 1))


def test_overlap_replace_on_redis_stops_the_fire_whichever_process_runs_it(
    poulpe: Start, redis_server: RedisServer, redis_prefix: str, exec_dir: Path, tmp_path: Path
) -> None:
    cron = tmp_path / "cron_task"
    cron.write_text("[overlap=replace] * * * * * * *  nap  EXEC  2.5\n")
    (line,) = parse_cron(cron.read_text())
    flags = on_redis(redis_server, redis_prefix, "--cron", str(cron), "--exec_dir", str(exec_dir))
    a, _ = poulpe.many(*flags, homes=["a", "b"])
    with a.client() as client:

        def replaced_on_both() -> bool:
            replaced = [j for j in fires(client) if j["status"] == "cancelled"]
            return len(replaced) >= 3 and len(nodes(replaced)) == 2

        # until three fires were replaced, on both processes (about 5 s on a quiet machine), then all is checked
        assert wait_for(replaced_on_both, 20, every=0.2)
        # Read between two replaces: right after a fire starts on one process, the other may still be stopping
        # the earlier fire (each process stops what it runs, at its own timer's turn).
        assert wait_for(lambda: sum(j["status"] == "running" for j in fires(client)) <= 1, 2), "two fires ran on"
        jobs = fires(client)
    assert all(j["id"].startswith(f"cron:{line.fingerprint}:") for j in jobs)
    replaced = [j for j in jobs if j["status"] == "cancelled"]
    assert len(replaced) >= 3 and not [j for j in jobs if j["status"] == "succeeded"]
    assert all(j["finished_at"] - j["started_at"] < 2.4 for j in replaced), "a replaced fire ran its 2.5 s"
    assert len({j["history"][-1]["node"] for j in replaced}) == 2, "one process ran every fire"
    runs = sorted((j["started_at"], j["finished_at"] or float("inf")) for j in jobs if j["started_at"])
    for (_, end), (start, _) in itertools.pairwise(runs):
        # The new fire may start on one process before the other's timer comes round to stop the earlier fire: on
        # a loaded machine that timer is late by up to some hundreds of ms. A fire left running would overlap the
        # next one by 1.5 s (2.5 s of work, a fire each second).
        assert start >= end - 1.0, "a replaced fire still ran beside the next one"


def fires(client: httpx.Client) -> list[dict[str, Any]]:
    return [j for j in client.get("/jobs", params={"size": 1000}).json()["jobs"] if j["id"].startswith("cron:")]

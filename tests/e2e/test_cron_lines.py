"""Cron line options at work on a real poulpe (SPEC 10.5): overlap, a line's own zone, backfill and `GET /cron`.

Restarts, SIGHUP and several processes on one Redis are in test_cron_restarts.py (subprocesses)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from poulpe.aborts import REPLACED
from poulpe.cron import parse_cron
from tests.serving import ServedPoulpe
from tests.target import Target

Start = Callable[..., ServedPoulpe]


def line_id(client: httpx.Client, number: int = 1) -> str:
    lines = client.get("/cron").json()["lines"]
    found: str = next(line["id"] for line in lines if line["line"] == number)
    return found


def fired_jobs(client: httpx.Client, fp: str) -> list[dict[str, Any]]:
    jobs = client.get("/jobs", params={"size": 1000}).json()["jobs"]
    return sorted((j for j in jobs if j["id"].startswith(f"cron:{fp}:")), key=lambda j: j["id"])


def metric(client: httpx.Client, sample: str) -> float:
    for row in client.get("/metrics").text.splitlines():
        if row.startswith(sample + " "):
            return float(row.rsplit(" ", 1)[1])
    raise AssertionError(f"{sample} is not in /metrics")


def fire_time(job: dict[str, Any]) -> int:
    return int(job["id"].rsplit(":", 1)[1])


def test_overlap_skip_never_runs_two_fires_at_once_and_skipped_fires_stay_skipped(
    served: Start, exec_dir: Path, tmp_path: Path
) -> None:
    cron = tmp_path / "cron_task"
    cron.write_text("[overlap=skip] * * * * * * *  nap  EXEC  2.5\n")
    p = served("--cron", str(cron), "--exec_dir", str(exec_dir), "--workers", "4")
    with p.client() as client:
        fp = line_id(client)
        time.sleep(7.2)
        jobs = fired_jobs(client, fp)
        time.sleep(1.5)  # a skipped fire made later would show up now
        later = [j for j in fired_jobs(client, fp) if j["id"] not in {k["id"] for k in jobs}]
        assert metric(client, 'poulpe_cron_fires_total{outcome="skipped"}') >= 3
    assert 2 <= len(jobs) <= 3, [j["id"] for j in jobs]  # every third second: 2.5 s of work, then the next free fire
    runs = [(j["started_at"], j["finished_at"] or float("inf")) for j in jobs if j["started_at"]]
    for (_, end), (start, _) in itertools.pairwise(runs):
        assert start >= end, "two fires of an overlap=skip line ran at once"
    assert all(j["started_at"] is None or j["started_at"] - fire_time(j) < 1.0 for j in jobs + later)
    assert all(fire_time(j) > fire_time(jobs[-1]) for j in later)  # only new fires, none of the skipped ones
    assert "skipped" in p.log()


def test_overlap_replace_stops_the_running_fire_for_the_next_one(served: Start, exec_dir: Path, tmp_path: Path) -> None:
    cron = tmp_path / "cron_task"
    cron.write_text("[overlap=replace] * * * * * * *  nap  EXEC  2.5\n")
    p = served("--cron", str(cron), "--exec_dir", str(exec_dir), "--workers", "4")
    with p.client() as client:
        fp = line_id(client)
        time.sleep(4.5)
        jobs = [j for j in fired_jobs(client, fp) if j["status"] != "scheduled"]
        assert metric(client, 'poulpe_cron_fires_total{outcome="replaced"}') >= 2
    replaced = [j for j in jobs if j["status"] == "cancelled"]
    assert len(replaced) >= 2, [(j["id"], j["status"]) for j in jobs]
    # each was stopped before its 2.5 s nap ended (by the next second's fire: under load that fire may come late)
    assert all(j["error"] == REPLACED and j["finished_at"] - j["started_at"] < 2.4 for j in replaced), [
        (j["id"], j["finished_at"] - j["started_at"]) for j in replaced
    ]
    assert not any(j["status"] == "succeeded" for j in jobs)  # none ran its 2.5 s out: each was replaced
    assert sum(j["status"] == "running" for j in jobs) <= 1
    runs = sorted((j["started_at"], j["finished_at"] or float("inf")) for j in jobs if j["started_at"])
    for (_, end), (start, _) in itertools.pairwise(runs):
        assert start >= end - 0.3, "the replaced fire still ran beside the next one"


def test_a_line_in_its_own_zone_fires_at_zoneinfo_times_across_daylight_saving(served: Start, tmp_path: Path) -> None:
    cron = tmp_path / "cron_task"
    cron.write_text(
        "[tz=Asia/Tokyo] 0 0 9 * * * *  http://127.0.0.1:9/tokyo  GET\n"
        "[tz=Europe/Paris] 0 0 * 28 3 * 2027  http://127.0.0.1:9/paris-hourly  GET\n"
        "[tz=America/New_York] 0 30 2 * 11 * 2027  http://127.0.0.1:9/new-york  GET\n"
        "0 0 9 * * * *  http://127.0.0.1:9/utc  GET\n"
    )
    p = served("--cron", str(cron), "--timezone", "UTC")
    with p.client() as client:
        now = time.time()
        lines = {line["name"].rsplit("/", 1)[1]: line for line in client.get("/cron").json()["lines"]}
    assert lines["tokyo"]["timezone"] == "Asia/Tokyo" and lines["utc"]["timezone"] == "UTC"
    assert lines["tokyo"]["next"] == daily(now, ZoneInfo("Asia/Tokyo"), 9, 0)
    assert lines["utc"]["next"] == daily(now, ZoneInfo("UTC"), 9, 0)
    paris = ZoneInfo("Europe/Paris")  # clocks go from 02:00 to 03:00 on 2027-03-28: 02:00 does not exist
    hours = [datetime(2027, 3, 28, h, tzinfo=paris) for h in range(24)]
    assert lines["paris-hourly"]["next"] == [t.timestamp() for t in hours if exists(t)][:3]
    assert [datetime.fromtimestamp(t, paris).hour for t in lines["paris-hourly"]["next"]] == [0, 1, 3]
    new_york = ZoneInfo("America/New_York")  # clocks go back on 2027-11-07: 02:30 once, EDT then EST
    days = [datetime(2027, 11, d, 2, 30, tzinfo=new_york) for d in range(1, 4)]
    assert lines["new-york"]["next"] == [t.timestamp() for t in days]


def daily(now: float, zone: ZoneInfo, hour: int, minute: int) -> list[float]:
    today = datetime.fromtimestamp(now, zone).replace(hour=hour, minute=minute, second=0, microsecond=0)
    days = [today + timedelta(days=n) for n in range(4)]
    return [t.timestamp() for t in days if t.timestamp() > now][:3]


def exists(wall: datetime) -> bool:
    """A wall time that survives a round trip through UTC happens (not in a spring-forward gap)."""
    return wall.astimezone(ZoneInfo("UTC")).astimezone(wall.tzinfo).replace(tzinfo=None) == wall.replace(tzinfo=None)


def test_a_backfill_makes_each_fire_of_the_range_once(served: Start, fresh_target: Target, tmp_path: Path) -> None:
    cron = tmp_path / "cron_task"
    url = fresh_target.url("/echo", key="bf")
    cron.write_text(f"[paused=true] * * * * * * *  {url}  GET\n")  # paused: only the backfill makes jobs
    p = served("--cron", str(cron))
    with p.client() as client:
        fp = line_id(client)
        end = int(time.time()) - 5
        window = {"from": end - 9, "to": end}
        first = client.post(f"/cron/{fp}/backfill", json=window)
        assert first.status_code == 200 and first.json() == {"id": fp, "fires": 10, "created": 10}
        expected = {f"cron:{fp}:{t}" for t in range(end - 9, end + 1)}
        deadline = time.monotonic() + 10
        while {c.job_id for c in fresh_target.calls} != expected:
            assert time.monotonic() < deadline, sorted(c.job_id or "" for c in fresh_target.calls)
            time.sleep(0.05)
        again = client.post(f"/cron/{fp}/backfill", json={"from": end - 9, "to": end})
        assert again.json() == {"id": fp, "fires": 10, "created": 0}
        iso = client.post(
            f"/cron/{fp}/backfill",
            json={"from": datetime.fromtimestamp(end - 9).astimezone().isoformat(), "to": end},
        )
        assert iso.json()["created"] == 0
        inside = client.post(f"/cron/{fp}/backfill", json={"from": end - 8.5, "to": end + 0.5})  # whole seconds in
        assert inside.json() == {"id": fp, "fires": 9, "created": 0}
        time.sleep(0.5)
        assert len(fresh_target.calls) == 10 and {c.job_id for c in fresh_target.calls} == expected
        bad = client.post(f"/cron/{fp}/backfill", json={"from": end, "to": end - 5})
        assert bad.status_code == 400 and bad.json()["field"] == "to"
        bad = client.post(f"/cron/{fp}/backfill", json={"from": "yesterday", "to": end})
        assert bad.status_code == 400 and bad.json()["field"] == "from"
        assert client.post("/cron/nosuchline/backfill", json=window).status_code == 404
        assert metric(client, 'poulpe_cron_fires_total{outcome="backfilled"}') == 10
        assert metric(client, 'poulpe_cron_lines{state="paused"}') == 1
        assert metric(client, 'poulpe_cron_fires_total{outcome="fired"}') == 0


def test_get_cron_shows_options_last_fire_and_status_and_put_pauses(
    served: Start, fresh_target: Target, tmp_path: Path
) -> None:
    cron = tmp_path / "cron_task"
    url = fresh_target.url("/echo", key="view")
    cron.write_text(f"[key=reports priority=5 jitter=0.5 overlap=skip catchup=60] * * * * * * *  {url}  GET\n")
    (line,) = parse_cron(cron.read_text())
    p = served("--cron", str(cron))
    with p.client() as client:
        view = client.get("/cron").json()["lines"][0]
        assert view["id"] == line.fingerprint and view["paused"] is False
        assert (view["key"], view["priority"], view["jitter"], view["overlap"], view["catchup"]) == (
            "reports",
            5,
            0.5,
            "skip",
            60,
        )
        deadline = time.monotonic() + 5
        while (last := client.get("/cron").json()["lines"][0]["last"]) is None or last["status"] != "succeeded":
            assert time.monotonic() < deadline, last
            time.sleep(0.1)
        job = client.get(f"/jobs/{last['id']}").json()
        assert job["key"] == "reports" and job["priority"] == 5
        assert client.put(f"/cron/{line.fingerprint}", json={"paused": "yes"}).json()["field"] == "paused"
        assert client.put(f"/cron/{line.fingerprint}", json={"pause": True}).status_code == 400
        assert client.put(f"/cron/{line.fingerprint}", json={"paused": True}).json()["paused"] is True

"""Bulk actions and batches at scale (SPEC 10.3, 10.4), measured on the embedded store:

1. A bulk retry of 100,000 dead jobs beside intake, as an A/B from one starting state. The dead jobs are made
   once (batches of 10,000, each job calling a closed port, --max_retry 0), the deployment paused (so what is
   measured is the action, not the 100,000 jobs it queues running again; with --run_retried they run, and
   intake's jobs too, each calling the closed port and dead again at once), and poulpe stopped; its SQLite files
   and dead letters are copied four times. B: a fresh poulpe on a copy, intake (32 clients, one job per request)
   from the moment `POST /actions {"action": "retry"}` is sent until the action is finished. A: a fresh poulpe on
   another copy, the same intake alone for as long as the first B lasted. They run in the order B, A, A, B, each
   on its own copy: symmetric in time, so a machine load that rises or falls steadily over the run moves both
   sides alike. The ratio (B's jobs per second over A's, rounds summed) compares intake on the same store growing
   by about the same number of rows over the same time (SQLite intake slows as the store grows: intake alone on
   the dead jobs' store only, or on the store B filled, is not the same condition). Notes kept beside it: the
   first 5 s of the first A (the former "alone before") and 5 s alone after each action (on the store B filled).
   A shared machine whose load jumps between rounds still moves the ratio (`ratio_each_round` shows it): the
   figures to publish come from a quiet machine.
2. Batches of 10,000 jobs to a fast target, each with an on_complete: how long after its last job ended (the
   batch's `finished_at`) its on_complete started.

Run: `.venv/bin/python -m bench.flows [--dead 100000] [--batches 3]`; prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp

from bench.procs import free_port, poulpe_command

CLOSED = "http://127.0.0.1:9/"  # refused at once: a job that dies in a millisecond
FLAGS = ("--max_retry", "0", "--workers", "32")
FIRST = 5.0  # seconds: intake alone at the start of A (the store holding only the dead jobs)
AFTER = 5.0  # seconds: intake alone after the action in B (the store the intake during it filled)
METHOD = (
    "A/B from one starting state (the dead jobs made once, poulpe stopped, its SQLite files and dead letters"
    " copied four times): B = intake while the retry action runs, A = intake alone for as long as the first B,"
    " same clients, in the order B A A B; ratio = intake during B / intake during A, all rounds summed"
)


def start_poulpe(home: Path, *flags: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    args = [*poulpe_command(), "--port", str(port), "--data", str(home / "p.db"), "--dead", str(home / "dead"),
            "--log_level", "warning", *flags]  # fmt: skip
    proc = subprocess.Popen(args, stdout=open(home / "poulpe.log", "ab"), stderr=subprocess.STDOUT)  # noqa: SIM115
    url = f"http://127.0.0.1:{port}"
    for _ in range(400):
        try:
            with __import__("urllib.request").request.urlopen(f"{url}/health", timeout=1):
                return proc, url
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("poulpe did not start")


async def until_done(session: aiohttp.ClientSession, url: str, batch_id: str) -> dict[str, Any]:
    while True:
        async with session.get(f"{url}/batches/{batch_id}") as resp:
            state: dict[str, Any] = await resp.json()
        if state["done"]:
            return state
        await asyncio.sleep(0.2)


class Rate(NamedTuple):
    sent: int
    seconds: float

    @property
    def per_s(self) -> float:
        return self.sent / self.seconds


async def intake(session: aiohttp.ClientSession, url: str, stop: asyncio.Event, clients: int = 32) -> Rate:
    """Single-job submissions accepted until `stop` is set."""
    sent = 0

    async def client() -> None:
        nonlocal sent
        while not stop.is_set():
            async with session.post(f"{url}/task_in_queue", json={"method": "GET", "name": CLOSED}) as resp:
                await resp.read()
                sent += resp.status == 202

    began = time.monotonic()
    await asyncio.gather(*(client() for _ in range(clients)))
    return Rate(sent, time.monotonic() - began)


async def intake_for(session: aiohttp.ClientSession, url: str, seconds: float) -> Rate:
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(seconds, stop.set)
    return await intake(session, url, stop)


def stop_poulpe(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (a clean stop: whole files to copy), SIGKILL after 60 s."""
    proc.terminate()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def make_dead(home: Path, dead: int, *, paused: bool) -> float:
    """`dead` dead jobs labelled team:pay, the deployment paused (or not), poulpe stopped: the starting state."""
    proc, url = start_poulpe(home, *FLAGS)
    try:
        async with aiohttp.ClientSession() as session:
            began = time.monotonic()
            for b in range(dead // 10_000):
                jobs = [{"id": f"d{b}-{i}", "method": "GET", "name": CLOSED, "labels": {"team": "pay"}}
                        for i in range(10_000)]  # fmt: skip
                async with session.post(f"{url}/batches", json={"id": f"dead-{b}", "jobs": jobs}) as resp:
                    assert resp.status == 202, await resp.text()
                await until_done(session, url, f"dead-{b}")
            made = time.monotonic() - began
            if paused:
                async with session.post(f"{url}/pause") as resp:
                    assert resp.status < 300, await resp.text()
    finally:
        stop_poulpe(proc)
    return made


def copy_state(made: Path, to: Path) -> Path:
    """A copy of the starting state: the SQLite files and the dead letters."""
    to.mkdir()
    for path in made.glob("p.db*"):
        shutil.copy2(path, to / path.name)
    shutil.copytree(made / "dead", to / "dead")
    return to


async def with_action(home: Path) -> dict[str, Any]:
    """B: intake while the retry action runs, from the moment it is posted until it is finished; then intake
    alone for AFTER seconds more, on the store the intake during the action filled (a note)."""
    proc, url = start_poulpe(home, *FLAGS)
    try:
        async with aiohttp.ClientSession() as session:
            stop = asyncio.Event()
            measuring = asyncio.create_task(intake(session, url, stop))
            began = time.monotonic()
            body = {"action": "retry", "filter": {"label": ["team:pay"]}}
            async with session.post(f"{url}/actions", json=body) as resp:
                started = await resp.json()
            while True:
                async with session.get(f"{url}/actions/{started['id']}") as resp:
                    state = await resp.json()
                if state["finished"]:
                    break
                await asyncio.sleep(0.2)
            took = time.monotonic() - began
            stop.set()
            during = await measuring
            after = await intake_for(session, url, AFTER)
    finally:
        stop_poulpe(proc)
    return {"matched": started["matched"], "retried": state["done"] - state["errors"], "took": took,
            "during": during, "after": after}  # fmt: skip


async def alone(home: Path, seconds: float) -> tuple[Rate, Rate]:
    """A: intake alone for `seconds` (B's time), the same clients: the first FIRST seconds (the former "alone
    before" figure, on the dead jobs' store only) and the rest, counted apart."""
    proc, url = start_poulpe(home, *FLAGS)
    try:
        async with aiohttp.ClientSession() as session:
            first = await intake_for(session, url, min(FIRST, seconds))
            rest = await intake_for(session, url, max(seconds - first.seconds, 0.0))
    finally:
        stop_poulpe(proc)
    return first, rest


def total(*rates: Rate) -> Rate:
    return Rate(sum(r.sent for r in rates), sum(r.seconds for r in rates))


async def bulk_retry(dead: int, *, paused: bool = True) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "made").mkdir()
        made = await make_dead(root / "made", dead, paused=paused)
        # B, A, A, B: symmetric in time, so a machine load that rises or falls steadily moves both sides alike
        b1 = await with_action(copy_state(root / "made", root / "b1"))
        first, rest1 = await alone(copy_state(root / "made", root / "a1"), b1["during"].seconds)
        _, rest2 = await alone(copy_state(root / "made", root / "a2"), b1["during"].seconds)
        b2 = await with_action(copy_state(root / "made", root / "b2"))
    pairs = [(b1["during"], total(first, rest1)), (b2["during"], rest2)]
    during, whole = total(b1["during"], b2["during"]), total(first, rest1, rest2)
    after = total(b1["after"], b2["after"])
    return {
        "method": METHOD,
        "dead_jobs": dead,
        "paused": paused,
        "made_dead_s": round(made, 1),
        "matched": b1["matched"],
        "retried": [b1["retried"], b2["retried"]],
        "action_s": [round(b1["took"], 1), round(b2["took"], 1)],
        "intake_during_per_s": round(during.per_s),
        "intake_alone_same_time_per_s": round(whole.per_s),
        "ratio": round(during.per_s / whole.per_s, 3),
        "ratio_each_round": [round(b.per_s / a.per_s, 3) for b, a in pairs],
        "jobs_submitted_during": during.sent,
        "jobs_submitted_alone": whole.sent,
        "notes": {
            "intake_alone_first_s": FIRST,
            "intake_alone_first_per_s": round(first.per_s),
            "ratio_to_alone_first": round(during.per_s / first.per_s, 3),
            "intake_after_per_s": round(after.per_s),
            "ratio_to_after": round(during.per_s / after.per_s, 3),
        },
    }


async def batch_lag(batches: int, target_port: int) -> dict[str, Any]:
    lags: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_poulpe(Path(tmp), "--workers", "32")
        try:
            async with aiohttp.ClientSession() as session:
                await asyncio.sleep(1.0)
                name = f"http://127.0.0.1:{target_port}/"
                for b in range(batches):
                    jobs = [{"method": "GET", "name": name} for _ in range(10_000)]
                    on_complete = {"method": "POST", "name": name, "params": "$batch"}
                    body = {"id": f"lag-{b}", "jobs": jobs, "on_complete": on_complete}
                    async with session.post(f"{url}/batches", json=body) as resp:
                        assert resp.status == 202, await resp.text()
                    state = await until_done(session, url, f"lag-{b}")
                    async with session.get(f"{url}/task_resp/lag-{b}.complete?timeout=30") as resp:
                        done = await resp.json()
                    lags.append(done["history"][0]["started_at"] - state["finished_at"])
        finally:
            proc.kill()
    return {"batches": batches, "jobs_each": 10_000, "on_complete_lag_s": [round(x, 3) for x in lags],
            "max_lag_s": round(max(lags), 3)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dead", type=int, default=100_000)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--run_retried", action="store_true", help="do not pause: the retried jobs (and intake's) run")
    args = parser.parse_args()
    target_port = free_port()
    target = subprocess.Popen([sys.executable, "-m", "bench.target", "--port", str(target_port)])
    try:
        out = {
            "bulk_retry": asyncio.run(bulk_retry(args.dead, paused=not args.run_retried)),
            "batch_end": asyncio.run(batch_lag(args.batches, target_port)) if args.batches else None,
        }
    finally:
        target.kill()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

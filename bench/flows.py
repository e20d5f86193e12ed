"""Bulk actions and batches at scale (SPEC 10.3, 10.4), measured on the embedded store:

1. 100,000 dead jobs (a batch of 10,000 at a time, each calling a closed port, --max_retry 0), then with the
   deployment paused (so what is measured is the action, not the 100,000 jobs it queues running again; with
   --run_retried they run, and intake's jobs too, each calling the closed port and dead again at once): intake
   alone for a few seconds, then intake while `POST /actions {"action": "retry"}` retries all of them, then intake
   alone again for a few seconds (on the store the intake during the action filled). The ratio of the rate during
   the action to the first rate alone (and to the second), and how long the action took.
2. Batches of 10,000 jobs to a fast target, each with an on_complete: how long after its last job ended (the
   batch's `finished_at`) its on_complete started.

Run: `.venv/bin/python -m bench.flows [--dead 100000] [--batches 3]`; prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.procs import free_port, poulpe_command

CLOSED = "http://127.0.0.1:9/"  # refused at once: a job that dies in a millisecond


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


async def intake(session: aiohttp.ClientSession, url: str, stop: asyncio.Event, clients: int = 32) -> float:
    """Single-job submissions per second until `stop` is set."""
    sent = 0

    async def client() -> None:
        nonlocal sent
        while not stop.is_set():
            async with session.post(f"{url}/task_in_queue", json={"method": "GET", "name": CLOSED}) as resp:
                await resp.read()
                sent += resp.status == 202

    began = time.monotonic()
    await asyncio.gather(*(client() for _ in range(clients)))
    return sent / (time.monotonic() - began)


async def bulk_retry(dead: int, *, paused: bool = True) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_poulpe(Path(tmp), "--max_retry", "0", "--workers", "32")
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
                    await session.post(f"{url}/pause")
                stop = asyncio.Event()
                asyncio.get_running_loop().call_later(5.0, stop.set)
                alone = await intake(session, url, stop)
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
                stop = asyncio.Event()  # alone again, on the store the intake during the action filled
                asyncio.get_running_loop().call_later(5.0, stop.set)
                after = await intake(session, url, stop)
        finally:
            proc.kill()
    return {
        "dead_jobs": dead,
        "paused": paused,
        "made_dead_s": round(made, 1),
        "matched": started["matched"],
        "retried": state["done"] - state["errors"],
        "action_s": round(took, 1),
        "intake_alone_per_s": round(alone),
        "intake_during_per_s": round(during),
        "intake_after_per_s": round(after),
        "ratio": round(during / alone, 3),
        "ratio_to_after": round(during / after, 3),
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
            "batch_end": asyncio.run(batch_lag(args.batches, target_port)),
        }
    finally:
        target.kill()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

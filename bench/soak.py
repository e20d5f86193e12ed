"""The soak: steady load for N minutes, one fault a minute; counts what was acknowledged and lost, watches memory.

    .venv/bin/python -m bench.soak --minutes 30          (the issue's soak; not in CI)
    .venv/bin/python -m bench.soak --minutes 3 --rate 50 (a short check)

It starts the counting target (bench/soak_target.py), a redis-server with AOF on its own port, one poulpe on SQLite
whose data dir is a small tmpfs it mounts (root; without it the disk-full fault is skipped and said so), and
`--redis-nodes` poulpes sharing the Redis. It submits `--rate` jobs a second, each to the SQLite poulpe or to the
Redis ones in turn, as a careful client does: on a 503, a connection error or a timeout it tries again with the
same id (so a `"stored": "unknown"` answer is safe), until it gets a 2xx. Half a minute into each minute comes one
fault, in turn: kill -9 of a poulpe (restarted at once on the same files), kill -9 of redis-server (restarted on the
same AOF), the tmpfs filled for 10 s. Every 10 s it samples each process's RSS and open files from /proc. At the
end it waits for every acknowledged job to be final and reports acknowledged, succeeded, dead, lost (acknowledged
but unknown or not final at the end: must be 0), and the jobs the target saw twice, in bench/out/soak-<time>.md.
The exit code is 1 when a job was lost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import redis

from bench.procs import Proc, Procs, free_port, open_fds, raise_nofile, rss_bytes

ROOT = Path(__file__).resolve().parent.parent
FAULTS = ("kill -9 poulpe", "kill -9 redis-server", "disk full 10 s")
FINAL = {"succeeded", "dead", "cancelled"}


@dataclass
class Node:
    name: str
    store: str
    proc: Proc

    @property
    def url(self) -> str:
        return self.proc.url


@dataclass
class Tally:
    acked: dict[str, str] = field(default_factory=dict)  # job id -> "sqlite" | "redis"
    answers: Counter[str] = field(default_factory=Counter)
    first_answer: dict[str, str] = field(default_factory=dict)
    gave_up: int = 0
    submitted: int = 0


class Soak:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.procs = Procs(workdir)
        self.tally = Tally()
        self.tag = dt.datetime.now(dt.UTC).strftime("%H%M%S")
        self.nodes: list[Node] = []
        self.faults: list[dict[str, Any]] = []
        self.samples: list[tuple[float, dict[str, tuple[float, int]]]] = []
        self.disk = workdir / "disk"
        self.tmpfs = False
        self.started = 0.0
        self.redis_proc: Proc | None = None
        self.redis_port = free_port()

    # --- processes ------------------------------------------------------------------------------------------------
    def start(self) -> None:
        self.disk.mkdir()
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.args.tmpfs_mb}m", "tmpfs", str(self.disk)],
            capture_output=True, check=False,
        )  # fmt: skip
        self.tmpfs = mounted.returncode == 0
        self.target = self.procs.module("target", "soak_target", "--port", str(port := free_port()), port=port)
        self.target.start().wait_http("/__counts")
        self.start_redis()
        sqlite = self.procs.poulpe(
            "poulpe-sqlite", "--data", str(self.disk / "poulpe.db"), "--dead", str(self.disk / "dead")
        )
        self.nodes.append(Node("poulpe-sqlite", "sqlite", sqlite))
        url = f"redis://127.0.0.1:{self.redis_port}/0"
        for n in range(self.args.redis_nodes):
            proc = self.procs.poulpe(f"poulpe-redis-{n}", "--redis", url)
            self.nodes.append(Node(f"poulpe-redis-{n}", "redis", proc))
        for node in self.nodes:
            node.proc.start().wait_http("/health", timeout=60)

    def start_redis(self) -> None:
        home = self.workdir / "redis"
        home.mkdir(exist_ok=True)
        exe = shutil.which("redis-server") or "redis-server"
        args = [exe, "--port", str(self.redis_port), "--bind", "127.0.0.1", "--dir", str(home), "--save", ""]
        args += ["--appendonly", "yes", "--appendfsync", "everysec", "--daemonize", "no", "--protected-mode", "no"]
        self.redis_proc = Proc("redis", args, home / "redis.log", port=self.redis_port).start()
        client = redis.Redis(port=self.redis_port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError):
                if client.ping():
                    return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not come back")

    def stop(self) -> None:
        for node in self.nodes:
            node.proc.stop()
        self.procs.close()
        if self.redis_proc is not None:
            self.redis_proc.stop()
        if self.tmpfs:
            subprocess.run(["umount", "-l", str(self.disk)], check=False)

    # --- faults ---------------------------------------------------------------------------------------------------
    def fault(self, k: int) -> dict[str, Any]:
        kind = FAULTS[k % len(FAULTS)]
        began = time.monotonic()
        record: dict[str, Any] = {"at_s": round(began - self.started), "fault": kind}
        if kind == "kill -9 poulpe":
            node = self.nodes[(k // len(FAULTS)) % len(self.nodes)]
            node.proc.kill9()
            node.proc = self.procs.respawn(node.proc)
            node.proc.start().wait_http("/health", timeout=120)
            record["detail"] = f"{node.name}, restarted on the same files"
        elif kind == "kill -9 redis-server":
            assert self.redis_proc is not None
            self.redis_proc.kill9()
            time.sleep(1)
            self.start_redis()
            record["detail"] = "restarted on the same AOF after 1 s"
        elif not self.tmpfs:
            record["detail"] = "skipped: no tmpfs could be mounted (needs root)"
        else:
            filler = self.disk / "filler"
            chunk = b"\0" * (1 << 20)
            with open(filler, "wb") as file:
                try:
                    while True:
                        file.write(chunk)
                        file.flush()
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
            time.sleep(10)
            filler.unlink()
            record["detail"] = f"the SQLite poulpe's {self.args.tmpfs_mb} MB tmpfs full for 10 s"
        record["recovered_s"] = round(time.monotonic() - began, 1)
        return record

    async def inject(self, until: float) -> None:
        k = 0
        while True:
            at = self.started + 30 + 60 * k
            if at >= until:
                return
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            record = await asyncio.to_thread(self.fault, k)
            print(f"  {record['at_s']:>5} s  {record['fault']}: {record.get('detail', '')}", flush=True)
            self.faults.append(record)
            k += 1

    # --- samples --------------------------------------------------------------------------------------------------
    def sample(self) -> None:
        row: dict[str, tuple[float, int]] = {}
        procs = [(node.name, node.proc) for node in self.nodes]
        if self.redis_proc is not None:
            procs.append(("redis", self.redis_proc))
        for name, proc in procs:
            try:
                row[name] = (rss_bytes(proc.pid) / 2**20, open_fds(proc.pid))
            except (OSError, RuntimeError, AssertionError):
                row[name] = (0.0, 0)
        self.samples.append((time.monotonic() - self.started, row))

    async def sampler(self, until: float) -> None:
        while time.monotonic() < until:
            self.sample()
            await asyncio.sleep(10)

    # --- load -----------------------------------------------------------------------------------------------------
    async def submit(self, client: aiohttp.ClientSession, n: int, give_up_at: float) -> None:
        store = "sqlite" if n % (1 + self.args.redis_nodes) == 0 else "redis"
        nodes = [node for node in self.nodes if node.store == store]
        job_id = f"soak-{self.tag}-{n}"
        job = {"id": job_id, "method": "GET", "name": f"{self.target.url}/hit"}
        delay, tries = 0.1, 0
        while time.monotonic() < give_up_at:
            node = nodes[(n + tries) % len(nodes)]
            tries += 1
            try:
                async with client.post(f"{node.url}/task_in_queue", json=job) as answer:
                    status, text = answer.status, await answer.text()
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.tally.answers[f"no answer ({type(exc).__name__})"] += 1
            else:
                if status in (200, 202):
                    self.tally.acked[job_id] = store
                    if tries > 1:
                        self.tally.answers["2xx after a retry"] += 1
                    return
                label = str(status)
                with contextlib.suppress(ValueError, AttributeError):
                    if json.loads(text).get("stored") == "unknown":
                        label += ' "stored": "unknown"'
                self.tally.answers[label] += 1
                if status != 503:
                    self.tally.first_answer.setdefault(label, text[:200])
                    return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
        self.tally.gave_up += 1

    async def load(self, until: float) -> None:
        connector = aiohttp.TCPConnector(limit=256)
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as client:
            tasks: set[asyncio.Task[None]] = set()
            n = 0
            while (now := time.monotonic()) < until:
                due = self.started + n / self.args.rate
                if due > now:
                    await asyncio.sleep(due - now)
                task = asyncio.create_task(self.submit(client, n, until + 60))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                n += 1
                self.tally.submitted = n
            if tasks:
                await asyncio.wait(tasks)

    # --- the end --------------------------------------------------------------------------------------------------
    async def settle(self) -> tuple[Counter[str], list[str]]:
        """Each acknowledged job's status once final (or at the drain deadline); the ids not final by then."""
        statuses: dict[str, str] = {}
        pending = list(self.tally.acked)
        deadline = time.monotonic() + self.args.drain
        sem = asyncio.Semaphore(32)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as client:

            async def look(job_id: str) -> None:
                nodes = [node for node in self.nodes if node.store == self.tally.acked[job_id]]
                async with sem:
                    for node in nodes:
                        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                            async with client.get(f"{node.url}/jobs/{job_id}") as answer:
                                found = answer.status == 200
                                statuses[job_id] = (await answer.json())["status"] if found else "unknown"
                            return
                    statuses[job_id] = "unreachable"

            while pending:
                await asyncio.gather(*(look(job_id) for job_id in pending))
                pending = [job_id for job_id in pending if statuses[job_id] not in FINAL]
                if not pending or time.monotonic() > deadline:
                    break
                await asyncio.sleep(2)
        return Counter(statuses.values()), pending

    async def run(self) -> int:
        self.started = time.monotonic()
        until = self.started + self.args.minutes * 60
        print(f"soak: {self.args.minutes:g} min at {self.args.rate:g} jobs/s on {len(self.nodes)} poulpes", flush=True)
        await asyncio.gather(self.load(until), self.inject(until), self.sampler(until))
        self.sample()
        print("soak: load over, waiting for every acknowledged job to be final", flush=True)
        statuses, pending = await self.settle()
        async with aiohttp.ClientSession() as client, client.get(f"{self.target.url}/__counts") as answer:
            counts: dict[str, int] = await answer.json()
        self.sample()
        return self.report(statuses, pending, counts)

    def report(self, statuses: Counter[str], pending: list[str], counts: dict[str, int]) -> int:
        acked = self.tally.acked
        twice = sorted(job_id for job_id in acked if counts.get(job_id, 0) >= 2)
        never = sorted(j for j in acked if counts.get(j, 0) == 0 and j not in pending)
        lost = len(pending)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
        lines = [
            f"# Soak, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
            "",
            f"`{' '.join(['python -m bench.soak', *sys.argv[1:]])}`: {self.args.minutes:g} min at {self.args.rate:g} "
            f"jobs/s; poulpes: {', '.join(n.name for n in self.nodes)}; "
            f"SQLite on a {self.args.tmpfs_mb} MB tmpfs: {'yes' if self.tmpfs else 'no (not root?)'}; "
            f"load average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores. Logs: {self.workdir}.",
            "",
            "## Jobs",
            "| submitted | acknowledged | succeeded | dead | cancelled | **lost** | not final at the end | ran twice | "
            "final but never seen by the target | given up by the client (never acknowledged) |",
            "|---|---|---|---|---|---|---|---|---|---|",
            f"| {self.tally.submitted} | {len(acked)} | {statuses['succeeded']} | {statuses['dead']} | "
            f"{statuses['cancelled']} | **{lost}** | {len(pending)} | {len(twice)} | {len(never)} | "
            f"{self.tally.gave_up} |",
            "",
            "Lost: acknowledged (2xx) but unknown or not final once the load stopped and "
            f"{self.args.drain:g} s passed. Statuses at the end: "
            + (", ".join(f"{k} {v}" for k, v in sorted(statuses.items())) or "none"),
            "",
            "## What the client was answered besides a first 2xx",
            "| answer | count |",
            "|---|---|",
            *(f"| {k} | {v} |" for k, v in sorted(self.tally.answers.items())),
            *(f"\nFirst `{k}` body: `{v}`" for k, v in self.tally.first_answer.items()),
            "",
            "## Faults",
            "| at (s) | fault | detail | back after (s) |",
            "|---|---|---|---|",
            *(f"| {f['at_s']} | {f['fault']} | {f.get('detail', '')} | {f['recovered_s']} |" for f in self.faults),
            "",
            "## Memory (RSS MiB) and open files, every 10 s",
        ]
        names = list(self.samples[0][1]) if self.samples else []
        lines.append("| t (s) | " + " | ".join(f"{name} MiB / fds" for name in names) + " |")
        lines.append("|---|" + "---|" * len(names))
        for at, row in self.samples:
            cells = [f"{row[n][0]:.0f} / {row[n][1]}" if n in row else "-" for n in names]
            lines.append(f"| {at:.0f} | " + " | ".join(cells) + " |")
        if pending:
            lines += ["", "Lost ids (first 20): " + ", ".join(pending[:20])]
        if twice:
            lines += ["", "Ran twice (first 20): " + ", ".join(f"{j} ({counts[j]})" for j in twice[:20])]
        text = "\n".join(lines) + "\n"
        out = self.args.out / f"soak-{stamp}.md"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(text)
        print(f"written to {out}")
        return 1 if lost else 0


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through `finally`: servers stopped, tmpfs unmounted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--minutes", type=float, default=30, help="how long the load lasts (default 30)")
    parser.add_argument("--rate", type=float, default=100, help="jobs submitted per second (default 100)")
    parser.add_argument("--redis-nodes", type=int, default=2, help="poulpes sharing the Redis (default 2)")
    parser.add_argument("--tmpfs-mb", type=int, default=256, help="size of the SQLite poulpe's tmpfs (default 256)")
    parser.add_argument("--drain", type=float, default=180, help="seconds allowed at the end for jobs to be final")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out", help="where the report goes")
    args = parser.parse_args(argv)
    raise_nofile()
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    workdir = Path(tempfile.mkdtemp(prefix="poulpe-soak-"))
    soak = Soak(args, workdir)
    try:
        soak.start()
        return asyncio.run(soak.run())
    finally:
        soak.stop()


if __name__ == "__main__":
    sys.exit(main())

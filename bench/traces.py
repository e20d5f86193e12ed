"""Tracing's cost end to end: HTTP-call jobs/s with tracing off, with tracing on (exporting every attempt's span
to a local OTLP/HTTP collector), and the previous release (a `git archive` of another branch, tracing off), in the
same run, rounds interleaved so that the machine's drift hits the three alike.

    python -m bench.traces [--jobs 5000] [--rounds 3] [--workers 64] [--previous main]

The collector is the test suite's (tests/otlp_collector.py: it decodes every span with opentelemetry-proto), in a
process of its own on the same cores as poulpe, as a collector on the same host would be.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import api
from bench.procs import Proc, Procs, free_port, poulpe_command

ROOT = Path(__file__).resolve().parents[1]


def poulpe_proc(procs: Procs, name: str, python_path: Path | None, *flags: str, workers: int) -> Proc:
    home = procs.workdir / name
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = (
        poulpe_command()
        if python_path is None
        else ["env", "-C", str(python_path), f"PYTHONPATH={python_path}", sys.executable, "-m", "poulpe"]
    )
    args = [
        *command,
        *("--port", str(port), "--data", str(home / "poulpe.db"), "--dead", str(home / "dead")),
        *("--workers", str(workers), "--max_retry", "0", "--grace", "2", *flags),
    ]
    return procs._add(Proc(name, args, home / "poulpe.log", port=port))


async def jobs_per_second(proc: Proc, target_url: str, n: int) -> float:
    proc.start()
    await asyncio.to_thread(proc.wait_http, "/health")
    job = {"method": "GET", "name": f"{target_url}/job"}
    try:
        async with api.session() as session:
            client = api.PoulpeClient(proc.url, session)
            start = time.monotonic()
            for first in range(0, n, 1000):
                await client.submit([job] * min(1000, n - first))
            end = await client.wait_finished(n, within=300)
    finally:
        proc.stop()
    return n / (end - start)


def extract(revision: str, into: Path) -> None:
    """The `poulpe` package as it is at `revision`, under `into`."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "poulpe"], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.traces", description=__doc__)
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=64)
    parser.add_argument("--previous", default="main", help="the git revision of the previous release (default main)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="poulpe-bench-traces-") as tmp:
        work = Path(tmp)
        previous = work / "previous"
        previous.mkdir()
        extract(args.previous, previous)
        procs = Procs(work)
        port = free_port()
        collector = procs._add(
            Proc("collector", [sys.executable, "-m", "tests.otlp_collector", str(port)], work / "c.log", port=port)
        )
        try:
            collector.start()
            await asyncio.to_thread(collector.wait_http, "/count")
            target = procs.target().start()
            await asyncio.to_thread(target.wait_http, "/")
            figures: dict[str, list[float]] = {"previous": [], "off": [], "on": []}
            for r in range(args.rounds):
                for case in figures:
                    path = previous if case == "previous" else None
                    flags = ("--otlp_endpoint", collector.url) if case == "on" else ()
                    proc = poulpe_proc(procs, f"{case}-{r}", path, *flags, workers=args.workers)
                    per_s = await jobs_per_second(proc, target.url, args.jobs)
                    figures[case].append(per_s)
                    print(f"round {r + 1} {case:>8}: {per_s:,.0f} jobs/s", flush=True)
            async with api.session() as session:
                spans = (await api.PoulpeClient(collector.url, session).get("/count"))["spans"]
        finally:
            procs.close()
    median = {case: statistics.median(values) for case, values in figures.items()}
    print(f"{args.jobs:,} HTTP-call jobs, --workers {args.workers}, {args.rounds} rounds; medians:")
    for case, value in median.items():
        spread = f"{min(figures[case]):,.0f}-{max(figures[case]):,.0f}"
        print(f"  {case:>8}: {value:,.0f} jobs/s (range {spread})")
    print(f"  tracing on / off: {median['on'] / median['off']:.0%} (target >= 85 %)")
    print(f"  tracing off / previous release ({args.previous}): {median['off'] / median['previous']:.0%}")
    print(f"  spans the collector received: {spans:,} (of {args.jobs * args.rounds:,} attempts traced)")


if __name__ == "__main__":
    asyncio.run(main())

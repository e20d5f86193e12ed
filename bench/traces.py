"""Tracing's cost end to end: HTTP-call jobs/s with tracing off, with tracing on (exporting every attempt's span
to a local OTLP/HTTP collector), and the previous release (a `git archive` of main before tracing came in, or of
--previous), in the same run, rounds interleaved (in an order that flips every round) so that the machine's drift
hits the three alike. The CPU each case costs per job (poulpe's event loop thread; its other threads: the SQLite
writer and, tracing on, the thread that hands spans on; its child processes: tracing on, the span export process;
the collector) is read from /proc: on a busy machine it moves far less than jobs/s.

    python -m bench.traces [--jobs 20000] [--rounds 11] [--workers 64] [--previous REVISION]

Eleven rounds by default: on the 2-core machine of docs/BENCHMARKS.md one round's tracing on / off ratio spread
from about 70 % to 110 %, and the median of five rounds moved by several points from one run to the next (79 to
91 % in one day's runs of the same code); the middle half of the rounds' ratios is printed with it.

The collector is the test suite's (tests/otlp_collector.py: it decodes every span with opentelemetry-proto), in a
process of its own on the same cores as poulpe, as a collector on the same host would be.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import api
from bench.procs import Proc, Procs, free_port, poulpe_command

ROOT = Path(__file__).resolve().parents[1]
TICKS = os.sysconf("SC_CLK_TCK")


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


def cpu_seconds(pid: int) -> tuple[float, float, float]:
    """(main thread, other threads, child processes) CPU seconds of a process so far, from /proc (utime + stime of
    each task; the children: tracing on, the span export process)."""
    main = others = children = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            used = (int(fields[11]) + int(fields[12])) / TICKS
            if task.name == str(pid):
                main += used
            else:
                others += used
            for child in (task / "children").read_text().split():
                children += sum(cpu_seconds(int(child)))
    return main, others, children


async def settled(pid: int, *, quiet_s: float = 0.3, within_s: float = 10.0) -> None:
    """Once poulpe has answered, until it and its children use no more CPU for `quiet_s`: the start-up's last work
    (tracing on: the span export process importing OpenTelemetry's SDK, a few hundred ms of CPU) is not measured."""
    deadline = time.monotonic() + within_s
    last = sum(cpu_seconds(pid))
    while time.monotonic() < deadline:
        await asyncio.sleep(quiet_s)
        now = sum(cpu_seconds(pid))
        if now == last:
            return
        last = now


async def jobs_per_second(proc: Proc, collector: Proc, target_url: str, n: int) -> tuple[float, list[float]]:
    """Jobs/s, and the CPU µs per job of poulpe's main thread, of its other threads, of its child processes and of
    the collector."""
    proc.start()
    await asyncio.to_thread(proc.wait_http, "/health")
    await settled(proc.pid)
    job = {"method": "GET", "name": f"{target_url}/job"}
    try:
        async with api.session() as session:
            client = api.PoulpeClient(proc.url, session)
            before = [*cpu_seconds(proc.pid), sum(cpu_seconds(collector.pid))]
            start = time.monotonic()
            await client.submit_copies(job, n)
            end = await client.wait_finished(n, within=300)
            await asyncio.sleep(0.5)  # the last batch of spans is sent (within the exporter's schedule delay)
            after = [*cpu_seconds(proc.pid), sum(cpu_seconds(collector.pid))]
    finally:
        proc.stop()
    return n / (end - start), [(b - a) * 1e6 / n for a, b in zip(before, after, strict=True)]


def before_tracing() -> str:
    """The last commit of main without tracing: the code whose throughput tracing off must keep."""
    log = ["git", "-C", str(ROOT), "log", "--first-parent", "--diff-filter=A", "--format=%h", "main", "--"]
    added = subprocess.run([*log, "poulpe/tracing.py"], check=True, capture_output=True, text=True).stdout.split()
    return f"{added[-1]}^"


def extract(revision: str, into: Path) -> None:
    """The `poulpe` package as it is at `revision`, under `into`."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "poulpe"], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.traces", description=__doc__)
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--workers", type=int, default=64)
    parser.add_argument(
        "--previous", help="the git revision to compare tracing off with (default: main before tracing came in)"
    )
    args = parser.parse_args(argv)
    args.previous = args.previous or before_tracing()
    load_at_start = os.getloadavg()
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
            cpu: dict[str, list[list[float]]] = {case: [] for case in figures}
            for r in range(args.rounds):
                # the order flips every round: a case run first (a cold page cache, a machine settling) or last
                # (the collector holding the spans of the rounds before) is not always the same one
                for case in list(figures) if r % 2 == 0 else reversed(figures):
                    path = previous if case == "previous" else None
                    flags = ("--otlp_endpoint", collector.url) if case == "on" else ()
                    proc = poulpe_proc(procs, f"{case}-{r}", path, *flags, workers=args.workers)
                    per_s, used = await jobs_per_second(proc, collector, target.url, args.jobs)
                    figures[case].append(per_s)
                    cpu[case].append(used)
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
    rounds = zip(figures["previous"], figures["off"], figures["on"], strict=True)
    per_round = [(on / off, off / previous) for previous, off, on in rounds]
    # the rates of a loaded machine fall in modes: a ratio of medians may take one case's high mode and the other's
    # low one, the median of the ratios of each round (the cases run side by side) does not
    on_off = statistics.median(on_off for on_off, _ in per_round)
    off_previous = statistics.median(off_previous for _, off_previous in per_round)
    print(f"  tracing on / off: {median['on'] / median['off']:.0%} of medians, {on_off:.0%} by the", end="")
    print(" median of the rounds' ratios (target >= 85 %); per round", end=" ")
    print(", ".join(f"{on_off:.0%}" for on_off, _ in per_round), end="")
    if len(per_round) >= 4:
        low, _, high = statistics.quantiles([on_off for on_off, _ in per_round], n=4)
        print(f"; middle half of the rounds {low:.0%} to {high:.0%}", end="")
    print()
    print(f"  tracing off / previous release ({args.previous}): {median['off'] / median['previous']:.0%}", end="")
    print(f" of medians, {off_previous:.0%} by the rounds' ratios; per round", end=" ")
    print(", ".join(f"{off_previous:.0%}" for _, off_previous in per_round))
    print(f"  spans the collector received: {spans:,} (of {args.jobs * args.rounds:,} attempts traced)")
    print("CPU per job, medians (µs): poulpe's main thread + its other threads + its span export process, collector")
    total = {}
    for case, values in cpu.items():
        main, others, children, coll = (statistics.median(v[i] for v in values) for i in range(4))
        total[case] = main + others + children + coll
        print(f"  {case:>8}: {main:,.0f} + {others:,.0f} + {children:,.0f}, collector {coll:,.0f}")
    print(f"  jobs per CPU second, tracing on / off: {total['off'] / total['on']:.0%}")
    print(f"  jobs per CPU second, tracing off / previous release: {total['previous'] / total['off']:.0%}")
    start_load, end_load = (", ".join(f"{x:.1f}" for x in loads) for loads in (load_at_start, os.getloadavg()))
    print(f"load average (1, 5, 15 min) at the start: {start_load}; at the end: {end_load}")


if __name__ == "__main__":
    asyncio.run(main())

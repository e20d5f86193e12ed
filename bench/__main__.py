"""python -m bench [--quick] [measurement ...]: run the measurements, print the table, rewrite the report.

Without names every measurement runs, in the order below. Each records bench/out/<name>.json (a --quick run:
bench/out/quick/), and the report is rebuilt from every JSON there, so a subset run updates only its own rows.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import FrameType, ModuleType

from bench import machine, report
from bench.context import Context
from bench.procs import Procs, raise_nofile

ROOT = Path(__file__).resolve().parent.parent
MEASUREMENTS = (
    "intake", "loops", "clients", "servers", "e2e", "profile", "lateness", "million", "longpolls", "redis", "kafka",
    "keys", "bursts", "tokens", "cron", "scale",
)  # fmt: skip


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="measurement", help=f"any of: {', '.join(MEASUREMENTS)}")
    parser.add_argument("--quick", action="store_true", help="short durations and small counts (development, tests)")
    parser.add_argument("--out", type=Path, help="where the JSON figures go (default bench/out, or bench/out/quick)")
    parser.add_argument("--report", type=Path, help="the Markdown written (default docs/BENCHMARKS.md)")
    parser.add_argument("--report-only", action="store_true", help="measure nothing: rewrite the report from the JSON")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in MEASUREMENTS]
    if unknown:
        parser.error(f"unknown measurement {', '.join(unknown)}: choose among {', '.join(MEASUREMENTS)}")
    if args.out is None:
        args.out = ROOT / "bench" / "out" / ("quick" if args.quick else "")
    if args.report is None:
        args.report = args.out / "BENCHMARKS.md" if args.quick else ROOT / "docs" / "BENCHMARKS.md"
    return args


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through every `finally`, so servers are stopped


def run_one(module: ModuleType, args: argparse.Namespace, command: str) -> bool:
    name = module.NAME
    workdir = Path(tempfile.mkdtemp(prefix=f"poulpe-bench-{name}-"))
    procs = Procs(workdir)
    ctx = Context(quick=args.quick, workdir=workdir, procs=procs)
    load, started = machine.loadavg(), time.monotonic()
    taken_at = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"==> {name}{' (quick)' if args.quick else ''}", file=sys.stderr, flush=True)
    ok = False
    try:
        result = asyncio.run(module.measure(ctx))
        result.taken_at, result.command, result.quick, result.loadavg = taken_at, command, args.quick, load
        result.duration_s = time.monotonic() - started
        result.machine, result.versions = machine.machine(), machine.versions()
        result.save(args.out)
        ok = True
    except Exception:
        traceback.print_exc()
        print(f"!!! {name} failed; its previous figures (if any) are kept", file=sys.stderr)
    finally:
        procs.close(on_error=lambda proc, exc: print(f"stopping {proc.name}: {exc}", file=sys.stderr))
        if not ok:
            keep = args.out / "logs" / name
            keep.mkdir(parents=True, exist_ok=True)
            for log in workdir.rglob("*.log"):
                shutil.copy(log, keep / f"{log.parent.name}-{log.name}")
            print(f"    logs kept in {keep}", file=sys.stderr)
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"    {name} took {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    return ok


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    raise_nofile()
    os.chdir(ROOT)
    command = os.environ.get("BENCH_COMMAND") or shlex.join(["python", "-m", "bench", *sys.argv[1:]])
    names = args.names or list(MEASUREMENTS)
    failed = []
    for name in [] if args.report_only else names:
        module = importlib.import_module(f"bench.{name}")
        if not run_one(module, args, command):
            failed.append(name)
    results = report.write(args.out, args.report, MEASUREMENTS, quick=args.quick)
    ran = [r for r in results if r.name in names]
    print(report.text_table(ran))
    print(f"\nreport: {args.report}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

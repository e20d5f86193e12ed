"""6. Where an HTTP-call job's CPU goes: poulpe's CPU per job split by stage, from py-spy samples of the e2e run.

poulpe runs the e2e jobs (SQLite, --workers 64) while `py-spy record --gil` samples the thread holding the GIL
(the one running Python code: a thread waiting for the GIL or in a system call is not counted), raw stacks. The raw
aiohttp client runs the same number of GETs on the same target in the same run, before and after poulpe (the
machine moves: both are kept, the lower CPU per request is subtracted). Each sample goes to the first stage its
stack meets from the leaf down (the record's own methods in poulpe/job.py count for their caller); the event loop's
thread's CPU (/proc) is shared among its samples by stage, the other threads' CPU among theirs. The stacks are kept
beside the figures (bench/out/profile/).
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import api
from bench.clients import raw_client, start_target
from bench.context import Context
from bench.procs import cpu_seconds
from bench.results import Result, at_most

NAME, TITLE = "profile", "Where an HTTP-call job's CPU goes"
WORKERS = 64
MACHINERY_TARGET = 100.0  # µs of poulpe's CPU per job beyond the raw client's per request
OUT = Path(__file__).resolve().parent / "out"
RATE = 400
WRITER = "the writer thread"  # samples per second and thread

# (stage, path prefixes): a frame belongs to the first stage one of whose prefixes its file starts with (py-spy names
# files from their import root: `poulpe/outcome.py`, `aiohttp/client.py`, `logging/__init__.py`).
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("logging", ("logging/", "poulpe/logs.py", "poulpe/log_filters.py")),
    ("metrics", ("poulpe/metrics.py", "prometheus_client/")),
    ("HTTP client (the call itself)", ("aiohttp/", "yarl/", "multidict/", "aiohappyeyeballs/")),
    ("store writer thread (commit)", (WRITER,)),
    ("store (encode, hand-off, reads)", ("poulpe/store/",)),
    ("HTTP intake and parsing", ("poulpe/intake/", "starlette/", "uvicorn/", "httptools/", "poulpe/app.py",
                                 "poulpe/http_protocol.py", "poulpe/api.py", "poulpe/responses.py", "poulpe/auth.py")),
    ("validation", ("poulpe/validate.py", "poulpe/checks.py", "poulpe/outbound.py")),
    ("submit (manager)", ("poulpe/manager.py", "poulpe/queries.py")),
    ("dispatch", ("poulpe/dispatch/",)),
    ("worker and attempt", ("poulpe/workers.py", "poulpe/alerts.py", "poulpe/tracing.py")),
    ("runner (poulpe's part)", ("poulpe/runners/",)),
    ("outcome record", ("poulpe/outcome.py", "poulpe/deadjobs.py")),
    ("events and waiters", ("poulpe/callbacks.py", "poulpe/dispatch/events.py")),
)  # fmt: skip
LOOP, OTHER = "event loop (asyncio, not attributed)", "other"
POLLS = "the bench's /sys_info polls (every 0.2 s: not a job's cost)"
POLL_EVERY = 0.2
SKIP = ("poulpe/job.py",)


def _file(frame: str) -> str:
    """`Class.function (path/to/file.py:12)` -> `path/to/file.py`."""
    return frame.rpartition(" (")[2].rpartition(":")[0]


def stage_of(frames: list[str], writer: bool) -> str:
    """The stage of one sampled stack, `frames` from the root to the leaf; `writer`: the SQLite writer's thread.
    Only the frames above the event loop's own count (a callback or a task's step): below them, every stack of the
    loop's thread is the same (the CLI, uvicorn's start, the loop)."""
    run = [i for i, frame in enumerate(frames) if _file(frame) == "asyncio/events.py"]
    if run:
        frames = frames[run[0] + 1 :]
    for frame in reversed(frames):
        path = _file(frame)
        if path.startswith(SKIP):
            continue
        if writer and path.startswith("poulpe/store/"):
            path = WRITER
        for stage, prefixes in STAGES:
            if path.startswith(prefixes):
                return stage
    return LOOP if run or not frames else OTHER


def split(raw: str) -> tuple[collections.Counter[str], collections.Counter[str]]:
    """Samples per stage from py-spy's raw output (`frame;frame;... count`, root first): the event loop's thread's,
    and the other threads' (the SQLite writer, the thread pool)."""
    main: collections.Counter[str] = collections.Counter()
    others: collections.Counter[str] = collections.Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        writer = any(frame.startswith("Writer.run (poulpe/store/sqlite_writer.py") for frame in frames)
        thread = others if any(_file(frame) == "threading.py" for frame in frames[:3]) else main
        thread[stage_of(frames, writer)] += int(count)
    return main, others


def main_thread_cpu(pid: int) -> float:
    """CPU seconds of a process's first thread (its event loop), from /proc/<pid>/task/<pid>/stat."""
    fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def share(cpu_s: float, samples: collections.Counter[str], n: int) -> dict[str, float]:
    """µs per job of each stage: the thread's CPU seconds shared by its samples."""
    total = sum(samples.values()) or 1
    return {stage: cpu_s / n * 1e6 * count / total for stage, count in samples.most_common()}


def py_spy() -> str:
    exe = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if exe is None:
        raise RuntimeError("py-spy is missing: ./bench/run.sh installs it (bench/requirements.txt)")
    return exe


def start_spy(pid: int, stacks: Path) -> subprocess.Popen[bytes]:
    argv = [py_spy(), "record", "--pid", str(pid), "--rate", str(RATE), "--format", "raw", "--nonblocking", "--gil"]
    argv += ["--output", str(stacks)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def keep_stacks(stacks: Path, keep: Path, err: bytes) -> str:
    """The stacks py-spy wrote, copied beside the figures."""
    if not stacks.exists():
        raise RuntimeError(f"py-spy wrote nothing: {err.decode(errors='replace')[-500:]}")
    raw = stacks.read_text()
    keep.mkdir(parents=True, exist_ok=True)
    (keep / "stacks.txt").write_text(raw)
    return raw


async def profiled_run(ctx: Context, target_url: str, n: int, keep: Path) -> dict[str, Any]:
    """Jobs/s, poulpe's CPU seconds (all threads, and the event loop's), and µs per job of each stage, of `n` jobs
    under py-spy."""
    poulpe = ctx.procs.poulpe("poulpe-profiled", "--max_retry", "0", workers=WORKERS).start()
    await asyncio.to_thread(poulpe.wait_http, "/health")
    stacks = ctx.workdir / "stacks.txt"
    spy = await asyncio.to_thread(start_spy, poulpe.pid, stacks)
    await asyncio.sleep(1.0)  # py-spy attaches
    job = {"method": "GET", "name": f"{target_url}/job"}
    async with api.session() as session:
        client = api.PoulpeClient(poulpe.url, session)
        start, cpu, loop_cpu = time.monotonic(), cpu_seconds(poulpe.pid), main_thread_cpu(poulpe.pid)
        await client.submit_copies(job, n)
        end = await client.wait_finished(n, within=ctx.pick(300, 60), interval=POLL_EVERY)
        cpu, loop_cpu = cpu_seconds(poulpe.pid) - cpu, main_thread_cpu(poulpe.pid) - loop_cpu
        # what the polls cost: 20 more on the same store, after the jobs (py-spy still sampling: they land in the
        # stacks as well, a negligible share)
        poll_cpu = cpu_seconds(poulpe.pid)
        for _ in range(20):
            await client.get("/sys_info")
        poll_cpu = (cpu_seconds(poulpe.pid) - poll_cpu) / 20
    spy.send_signal(signal.SIGINT)
    _, err = await asyncio.to_thread(spy.communicate, timeout=60)
    poulpe.stop()
    raw = await asyncio.to_thread(keep_stacks, stacks, keep, err)
    main, others = split(raw)
    polls_us = poll_cpu * ((end - start) / POLL_EVERY + 1) / n * 1e6
    stages = share(loop_cpu, main, n)
    for stage, us in share(cpu - loop_cpu, others, n).items():
        stages[stage] = stages.get(stage, 0.0) + us
    stages = dict(sorted(stages.items(), key=lambda item: -item[1]))
    stages[POLLS] = polls_us  # inside the stages above too: shown apart, subtracted from the machinery
    return {"jobs_per_s": n / (end - start), "cpu_s": cpu, "loop_cpu_s": loop_cpu, "n": n,
            "stages_us": stages, "samples": sum(main.values()) + sum(others.values())}  # fmt: skip


async def uvloop_run(ctx: Context, target_url: str, n: int) -> tuple[float, float]:
    """Jobs/s and CPU µs per job of the same jobs on `poulpe --loop uvloop`, not sampled: what a loop in C gives."""
    poulpe = ctx.procs.poulpe("poulpe-uvloop", "--max_retry", "0", loop="uvloop", workers=WORKERS).start()
    await asyncio.to_thread(poulpe.wait_http, "/health")
    job = {"method": "GET", "name": f"{target_url}/job"}
    async with api.session() as session:
        client = api.PoulpeClient(poulpe.url, session)
        start, cpu = time.monotonic(), cpu_seconds(poulpe.pid)
        await client.submit_copies(job, n)
        end = await client.wait_finished(n, within=ctx.pick(300, 60), interval=POLL_EVERY)
        cpu = cpu_seconds(poulpe.pid) - cpu
    poulpe.stop()
    return n / (end - start), cpu / n * 1e6


def load_before(keep: Path) -> dict[str, Any] | None:
    """The figures of bench/out/profile/before/profile.json (the code before the cuts of issue 20), when kept."""
    path = keep / "before" / "profile.json"
    if not path.exists() or keep.name == "before":
        return None
    raw: dict[str, Any] = json.loads(path.read_text())["raw"]
    return raw


async def measure(ctx: Context) -> Result:
    n = ctx.pick(20_000, 3_000)
    result = Result(NAME, TITLE, (__doc__ or "").split("\n\n", 1)[1].replace("\n", " ").strip())
    result.method += (
        f" {n:,} immediate GET jobs (no id) to bench/target.py, posted in batches of 1,000, --workers {WORKERS},"
        f" --max_retry 0, default log level; py-spy at {RATE} Hz, --gil --nonblocking (poulpe is not paused to sample)."
    )
    target = await start_target(ctx)
    # BENCH_PROFILE_DIR=before: the run of the code before a change (PYTHONPATH=<its checkout>), kept apart
    keep = OUT / ("quick/profile" if ctx.quick else "profile") / os.environ.get("BENCH_PROFILE_DIR", "")
    ctx.log("raw aiohttp (before)")
    before = await raw_client(ctx, target, "aiohttp", n, ctx.pick(60, 15))
    ctx.log("poulpe under py-spy")
    run = await profiled_run(ctx, target.url, n, keep)
    ctx.log("raw aiohttp (after)")
    after = await raw_client(ctx, target, "aiohttp", n, ctx.pick(60, 15))
    ctx.log("poulpe --loop uvloop, not sampled")
    uv_rate, uv_us = await uvloop_run(ctx, target.url, n)
    raw_us = min(before["cpu_s"] / before["done"], after["cpu_s"] / after["done"]) * 1e6
    raw_rps = max(before["rps"], after["rps"])
    per_job = run["cpu_s"] / n * 1e6
    machinery = per_job - raw_us - run["stages_us"].get(POLLS, 0.0)
    result.add("poulpe CPU per job (all threads)", per_job, "µs", "raw aiohttp CPU per request", raw_us)
    result.add(
        "poulpe's machinery per job (CPU per job minus the raw client's per request and the bench's polls)",
        machinery,
        "µs",
        target=f"≤ {MACHINERY_TARGET:.0f} µs",
        met=at_most(machinery, MACHINERY_TARGET),
    )
    result.add("HTTP-call jobs under py-spy", run["jobs_per_s"], "jobs/s", "raw aiohttp", raw_rps, peer_unit="req/s")
    result.add("poulpe --loop uvloop: CPU per job (not sampled)", uv_us, "µs", "the default loop, sampled", per_job)
    result.add("poulpe --loop uvloop: HTTP-call jobs", uv_rate, "jobs/s", "raw aiohttp", raw_rps, peer_unit="req/s")
    earlier = load_before(keep)
    if earlier is not None:
        result.add("poulpe CPU per job before the cuts", earlier["cpu_s"] / earlier["n"] * 1e6, "µs", "after", per_job)
    for stage, us in run["stages_us"].items():
        was = f" (before: {earlier['stages_us'].get(stage, 0.0):,.1f})" if earlier is not None else ""
        result.notes.append(f"{stage}: {us:,.1f} µs per job{was}")
    result.notes.append(
        f"{run['samples']:,} samples; the event loop's thread used {run['loop_cpu_s'] / n * 1e6:,.0f} µs per job,"
        f" the other threads (the SQLite writer, the thread pool) {(run['cpu_s'] - run['loop_cpu_s']) / n * 1e6:,.0f};"
        f" each thread's CPU is shared among its own samples. The raw client used"
        f" {before['cpu_s'] / before['done'] * 1e6:,.0f} µs per request before poulpe's run and"
        f" {after['cpu_s'] / after['done'] * 1e6:,.0f} after (the lower is subtracted)."
    )
    result.raw = {**run, "raw_before": before, "raw_after": after, "load_after": os.getloadavg()}
    return result

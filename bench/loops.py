"""2. Event loop: intake and EXEC spawn throughput under `--loop asyncio` and `--loop uvloop`."""

from __future__ import annotations

import asyncio
import shutil
import time

from bench import api, intake
from bench.context import Context
from bench.results import Result

NAME, TITLE = "loops", "Event loop: asyncio or uvloop"
LOOPS = ("asyncio", "uvloop")
SPAWN_CONCURRENCY = 8  # poulpe's default --workers


async def exec_jobs(ctx: Context, loop: str, n: int, notes: list[str]) -> tuple[float, int]:
    """Jobs/s of `n` EXEC jobs running a copy of /bin/true, first submit to last final; and how many failed."""
    exec_dir = ctx.workdir / "exec"
    exec_dir.mkdir(exist_ok=True)
    program = shutil.which("true") or "/bin/true"
    shutil.copy(program, exec_dir / "true")
    poulpe = ctx.procs.poulpe(f"poulpe-exec-{loop}", "--exec_dir", str(exec_dir), "--max_retry", "0", loop=loop)
    poulpe.start()
    await asyncio.to_thread(poulpe.wait_http, "/health")
    async with api.session() as session:
        client = api.PoulpeClient(poulpe.url, session)
        start = time.monotonic()
        await client.submit_copies({"method": "EXEC", "name": "true"}, n)
        end = await client.wait_finished(n, within=ctx.pick(120, 60))
        try:
            failed = int((await client.get("/sys_info"))["today"]["failed"])
        except api.ServerError as exc:
            client.server_errors.append(str(exc))
            failed = 0
        client.report_errors(notes, f"EXEC under {loop}")
    poulpe.stop()
    return n / (end - start), failed


async def raw_spawn(ctx: Context, loop: str, n: int) -> float:
    found = await ctx.client(
        f"spawn-{loop}", "spawn", "--loop", loop, "--program", shutil.which("true") or "/bin/true",
        "--n", str(n), "--concurrency", str(SPAWN_CONCURRENCY), "--max-seconds", "60", within=90,
    )  # fmt: skip
    per_s: float = found["per_s"]
    return per_s


async def measure(ctx: Context) -> Result:
    n = ctx.pick(2000, 400)
    settings = intake.wrk_settings(ctx)
    result = Result(
        NAME,
        TITLE,
        f"The single-job intake of section 1 (wrk, {intake.SINGLE_CONNECTIONS} connections, {settings['seconds']} s"
        f" after {settings['warmup']} s of warm-up, durable poulpe beside the bare app on the same loop), then"
        f" {n:,} EXEC jobs running a copy of /bin/true from --exec_dir with poulpe's default 8 workers, submitted in"
        " batches of 1,000 and timed from the first submit until /sys_info (polled every 0.2 s) counts them all"
        f" ended; beside it, the same loop spawning /bin/true alone ({SPAWN_CONCURRENCY} at a time, "
        "asyncio.create_subprocess_exec, in its own process).",
    )
    figures: dict[str, dict[str, float]] = {}
    for loop in LOOPS:
        ctx.log(f"{loop}: bare and durable intake")
        bare = (await intake.bare_rps(ctx, loop, (None,)))[None]
        durable = await intake.durable_rps(ctx, loop, None)
        intake.check(result, f"intake {loop}", durable)
        intake.cpu_note(result, f"intake, {loop}", durable, bare, 1)
        ctx.log(f"{loop}: EXEC jobs")
        exec_per_s, failed = await exec_jobs(ctx, loop, n, result.notes)
        if failed:
            result.notes.append(f"{loop}: {failed} of the EXEC jobs failed.")
        spawn = await raw_spawn(ctx, loop, n)
        figures[loop] = {"bare": bare.rps, "durable": durable.rps, "exec": exec_per_s, "spawn": spawn}
    for loop in LOOPS:
        f = figures[loop]
        result.add(f"intake, single job per request, {loop}", f["durable"], "req/s", "bare app, same loop", f["bare"])
    for loop in LOOPS:
        f = figures[loop]
        result.add(f"EXEC /bin/true jobs, {loop}", f["exec"], "jobs/s", "raw spawn, same loop", f["spawn"])
    a, u = figures["asyncio"], figures["uvloop"]
    result.raw = figures
    faster = "uvloop" if u["durable"] > a["durable"] else "asyncio"
    result.notes.append(
        f"Intake: {faster} is faster ({max(u['durable'], a['durable']) / min(u['durable'], a['durable']):.2f}x"
        f" the other; bare app {u['bare'] / a['bare']:.2f}x under uvloop)."
    )
    faster = "uvloop" if u["exec"] > a["exec"] else "asyncio"
    result.notes.append(
        f"EXEC: {faster} runs more jobs/s ({max(u['exec'], a['exec']) / min(u['exec'], a['exec']):.2f}x the other;"
        f" raw spawn {a['spawn'] / u['spawn']:.2f}x faster under asyncio)."
    )
    return result

"""11. Cron fire lateness: 1,000 cron lines firing every second (jitter off); how late does each fire start?

Every line fires at the same whole second, so each second 1,000 jobs come due at one instant. A fire's lateness is
its attempt's start minus its fire time (the time in its id). The peer is the same with 100 lines: it tells the
cron timer's own precision from the queueing of 1,000 simultaneous starts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

from bench import api
from bench.clients import start_target
from bench.context import Context
from bench.lateness import percentile
from bench.results import Result, at_most

NAME, TITLE = "cron", "Cron fire lateness"
LINES, PEER_LINES = 1000, 100
WORKERS = 64
P99_TARGET_MS = 5.0


@dataclasses.dataclass
class Fires:
    lines: int
    late_ms: list[float]  # sorted

    def p(self, q: float) -> float:
        return percentile(self.late_ms, q)


async def run(ctx: Context, lines: int, seconds: float, target_url: str) -> Fires:
    home = ctx.workdir / f"cron-{lines}"
    home.mkdir(parents=True, exist_ok=True)
    cron = home / "cron_task"
    cron.write_text("".join(f"* * * * * * *  {target_url}/late?line={n}  GET\n" for n in range(lines)))
    poulpe = ctx.procs.poulpe(f"poulpe-cron-{lines}", "--max_retry", "0", "--cron", str(cron), workers=WORKERS)
    poulpe.start()
    await asyncio.to_thread(poulpe.wait_http, "/health")
    await asyncio.sleep(1.5)  # the first fires after start-up are left out: the process is still warming up
    began = time.time()
    await asyncio.sleep(seconds)
    ended = time.time()
    poulpe.stop()
    poulpe = ctx.procs.poulpe(f"poulpe-cron-{lines}", "--max_retry", "0", workers=WORKERS).start()  # no cron now
    await asyncio.to_thread(poulpe.wait_http, "/health")
    async with api.session() as session:
        client = api.PoulpeClient(poulpe.url, session)
        jobs = await client.succeeded_jobs(int(lines * (seconds + 10)))
    poulpe.stop()
    late = []
    for job in jobs:
        fire = int(job["id"].rsplit(":", 1)[1])
        if began <= fire <= ended - 1:
            late.append((job["history"][0]["started_at"] - fire) * 1000)
    ctx.log(f"{lines} lines: {len(late):,} fires measured")
    return Fires(lines, sorted(late))


async def measure(ctx: Context) -> Result:
    seconds = ctx.pick(10.0, 3.0)
    result = Result(
        NAME,
        TITLE,
        f"A cron file of {LINES:,} lines `* * * * * * *  <bench/target.py>/late  GET` (jitter off), so {LINES:,} jobs"
        f" come due at each whole second; poulpe runs with --workers {WORKERS}. After {seconds:g} s (the first"
        " 1.5 s after start-up left out) every fire is read back and its lateness is `history[0].started_at` minus"
        f" its fire time. The peer is the same with {PEER_LINES} lines.",
    )
    target = await start_target(ctx)
    main = await run(ctx, LINES, seconds, target.url)
    peer = await run(ctx, PEER_LINES, seconds, target.url)
    label = f"same with {PEER_LINES} lines"
    result.add("fire lateness p50", main.p(50), "ms", label, peer.p(50))
    result.add(
        "fire lateness p99",
        main.p(99),
        "ms",
        label,
        peer.p(99),
        target=f"≤ {P99_TARGET_MS:g} ms",
        met=at_most(main.p(99), P99_TARGET_MS),
    )
    result.add("fire lateness max", main.late_ms[-1], "ms", label, peer.late_ms[-1])
    for found in (main, peer):
        result.notes.append(
            f"{found.lines} lines: p0 {found.p(0):.2f} ms, p10 {found.p(10):.2f} ms, p90 {found.p(90):.2f} ms over"
            f" {len(found.late_ms):,} fires."
        )
    result.raw = {str(found.lines): dataclasses.asdict(found) | {"late_ms": None} for found in (main, peer)}
    return result

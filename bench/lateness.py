"""5. Lateness: jobs coming due at ~1,000/s, each a GET to the fast target; how late does each attempt start?

The same measurement at a fifth of the rate is the peer: it tells the scheduler's own precision from the
queueing of a loop that is busy running the jobs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

from bench import api
from bench.clients import start_target
from bench.context import Context
from bench.results import Result, at_most

NAME, TITLE = "lateness", "Lateness of due jobs"
RATE, PEER_RATE = 1000, 200  # jobs coming due per second
WORKERS = 64
P99_TARGET_MS = 5.0


def percentile(ordered: list[float], p: float) -> float:
    """Nearest-rank percentile of an ordered list."""
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


@dataclasses.dataclass
class Lateness:
    rate: int
    late_ms: list[float]  # sorted
    by_second: list[float]  # p99 of the jobs due in each second of the window
    margin_s: float  # how long before the first due time the last batch was stored

    def p(self, q: float) -> float:
        return percentile(self.late_ms, q)


async def run(ctx: Context, rate: int, window: float, lead: float, target_url: str) -> Lateness:
    n = int(rate * window)
    poulpe = ctx.procs.poulpe(f"poulpe-{rate}", "--max_retry", "0", workers=WORKERS).start()
    await asyncio.to_thread(poulpe.wait_http, "/health")
    async with api.session() as session:
        client = api.PoulpeClient(poulpe.url, session)
        start_at = time.time() + lead
        for first in range(0, n, 1000):
            batch = [
                {"method": "GET", "name": f"{target_url}/late", "at": start_at + i / rate}
                for i in range(first, min(first + 1000, n))
            ]
            await client.submit(batch)
        margin = start_at - time.time()
        ctx.log(f"{rate}/s: submitted {n:,} jobs, {margin:.2f} s before the first comes due")
        await client.wait_finished(n, within=lead + window + 120)
        jobs = await client.succeeded_jobs(n)
    poulpe.stop()
    pairs = [(job["run_at"] - start_at, (job["history"][0]["started_at"] - job["run_at"]) * 1000) for job in jobs]
    seconds: dict[int, list[float]] = {}
    for due, ms in pairs:
        seconds.setdefault(int(due), []).append(ms)
    by_second = [percentile(sorted(seconds[s]), 99) for s in sorted(seconds)]
    return Lateness(rate, sorted(ms for _, ms in pairs), by_second, margin)


async def measure(ctx: Context) -> Result:
    window, lead = ctx.pick(10.0, 2.0), ctx.pick(3.0, 2.0)
    result = Result(
        NAME,
        TITLE,
        f"{int(RATE * window):,} GET jobs to bench/target.py are submitted ahead (batches of 1,000) with `at` times"
        f" spread evenly over a {window:g} s window starting {lead:g} s later, so {RATE:,} jobs/s come due; poulpe"
        f" runs with --workers {WORKERS}. Afterwards every job is read back through GET /jobs?status=succeeded"
        " (1,000 per page) and its lateness is `history[0].started_at - run_at`. The peer is the same run, on a"
        f" fresh poulpe, at {PEER_RATE} jobs/s.",
    )
    target = await start_target(ctx)
    main = await run(ctx, RATE, window, lead, target.url)
    peer = await run(ctx, PEER_RATE, window, lead, target.url)
    peer_label = f"same at {PEER_RATE} jobs/s"
    result.add("lateness p50", main.p(50), "ms", peer_label, peer.p(50))
    result.add(
        "lateness p99",
        main.p(99),
        "ms",
        peer_label,
        peer.p(99),
        target=f"≤ {P99_TARGET_MS:g} ms",
        met=at_most(main.p(99), P99_TARGET_MS),
    )
    result.add("lateness max", main.late_ms[-1], "ms", peer_label, peer.late_ms[-1])
    for found in (main, peer):
        expected = int(found.rate * window)
        if len(found.late_ms) < expected:
            result.notes.append(f"{found.rate}/s: only {len(found.late_ms):,} of {expected:,} jobs succeeded.")
        if found.margin_s < 0:
            result.notes.append(f"{found.rate}/s: submitting ended {-found.margin_s:.2f} s after the first due time.")
        early = sum(1 for ms in found.late_ms if ms < 0)
        if early:
            result.notes.append(f"{found.rate}/s: {early} jobs started before their time.")
        result.notes.append(
            f"{found.rate}/s: p90 {found.p(90):.2f} ms, p99.9 {found.p(99.9):.2f} ms, mean"
            f" {sum(found.late_ms) / len(found.late_ms):.2f} ms over {len(found.late_ms):,} jobs; p99 of each second"
            f" of the window: {', '.join(f'{ms:.0f}' for ms in found.by_second)} ms."
        )
    result.raw = {str(found.rate): dataclasses.asdict(found) | {"late_ms": None} for found in (main, peer)}
    return result

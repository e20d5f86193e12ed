"""11. Bursts and windows: single-job intake with a unique window on every job, beside the same run without."""

from __future__ import annotations

import asyncio

from bench import wrk
from bench.context import Context
from bench.procs import cpu_seconds
from bench.results import Result, at_least

NAME, TITLE = "bursts", "Bursts and windows: what a unique window costs at intake"
UNIQUE = ',"unique":{"for":600}'
CONNECTIONS = 64
RATIO_TARGET = 0.90
ROUNDS = 4  # each kind in turn, so that a busy moment of the machine falls on both; even, so each goes first twice


async def one_run(ctx: Context, label: str, extra: str, start: int) -> wrk.WrkRun:
    """A fresh poulpe (empty SQLite file), a warm-up, then the measured run with its CPU time."""
    poulpe = ctx.procs.poulpe(label).start()
    await asyncio.to_thread(poulpe.wait_http, "/health")
    url = f"{poulpe.url}/task_in_queue"
    seconds = ctx.pick(8, 2)
    await asyncio.to_thread(wrk.post_distinct, url, extra, start=start, seconds=ctx.pick(2, 1))
    before = cpu_seconds(poulpe.pid)
    run = await asyncio.to_thread(wrk.post_distinct, url, extra, start=start + 10**9, seconds=seconds)
    run.cpu_s = cpu_seconds(poulpe.pid) - before
    poulpe.stop()
    return run


async def measure(ctx: Context) -> Result:
    result = Result(
        NAME,
        TITLE,
        f"wrk (1 thread, bench/post_distinct.lua, {CONNECTIONS} connections) posts one job per request, each with"
        " params of its own (a counter: no two are the same job), delayed 10 days (nothing runs), for"
        f" {ctx.pick(8, 2)} s after a warm-up, to a fresh poulpe on an empty SQLite file; with `{UNIQUE[1:]}`"
        f" appended to every job (each takes a window of its own: the default key, a hash of method, name and"
        f" params), and without. {ROUNDS} rounds of each, in turn, the side that goes first swapping every round;"
        " the figures are the sums over the rounds.",
    )
    totals = {False: [0, 0.0, 0.0], True: [0, 0.0, 0.0]}  # requests, seconds, CPU seconds
    for round_ in range(ROUNDS):
        for unique in (False, True) if round_ % 2 == 0 else (True, False):  # who goes first swaps every round
            ctx.log(f"round {round_ + 1}, {'with' if unique else 'without'} unique windows")
            run = await one_run(ctx, f"bursts-{round_}-{int(unique)}", UNIQUE if unique else "", round_ * 10**10)
            if run.non_2xx or run.socket_errors:
                result.notes.append(f"{'unique' if unique else 'plain'}: {run.non_2xx} non-2xx, {run.socket_errors}"
                                    " socket errors.")  # fmt: skip
            total = totals[unique]
            total[0] += run.requests
            total[1] += run.seconds
            total[2] += run.cpu_s or 0.0
    rps = {unique: t[0] / t[1] for unique, t in totals.items()}
    cpu = {unique: t[2] / t[0] * 1e6 for unique, t in totals.items()}
    result.raw.update({"rps_plain": rps[False], "rps_unique": rps[True], "cpu_us_plain": cpu[False]})
    result.raw["cpu_us_unique"] = cpu[True]
    result.add(
        "single-job intake with a unique window on every job",
        rps[True],
        "req/s",
        peer="the same without unique",
        peer_value=rps[False],
        target=f"≥ {RATIO_TARGET:.0%} of without",
        met=at_least(rps[True] / rps[False], RATIO_TARGET),
    )
    result.notes.append(
        f"CPU per request (all threads): {cpu[True]:,.0f} µs with unique windows, {cpu[False]:,.0f} µs without"
        f" ({cpu[False] / cpu[True]:.0%}): the figure a busy machine changes least."
    )
    return result

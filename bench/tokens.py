"""11. Tokens: intake with a tokens file of 1,000 entries (the token used has a tenant) beside intake with one
`--token`, in the same run."""

from __future__ import annotations

import asyncio

from bench import wrk
from bench.context import Context
from bench.intake import SINGLE_CONNECTIONS, body, wrk_settings
from bench.results import Result, at_least

NAME, TITLE = "tokens", "Tokens: the cost of scopes and tenants"
ENTRIES, RATIO_TARGET, ROUNDS = 1000, 0.95, 4  # even: each side goes first in half the rounds


def tokens_file(ctx: Context) -> tuple[str, str]:
    """A file of ENTRIES tokens (each its own tenant); the path and the last entry's token, the one used."""
    from poulpe.tokens import new_entry

    tables, token = [], ""
    for n in range(ENTRIES):
        token, table = new_entry(f"team{n}", ["submit", "read"], tenant=f"team{n}")
        tables.append(table)
    path = ctx.workdir / "tokens.toml"
    path.write_text("\n".join(tables))
    return str(path), token


async def intake(ctx: Context, label: str, token: str, *flags: str) -> wrk.WrkRun:
    poulpe = ctx.procs.poulpe(label, *flags).start()
    await asyncio.to_thread(poulpe.wait_http, "/health")
    run = await asyncio.to_thread(
        wrk.post, f"{poulpe.url}/task_in_queue", body(None), ctx.workdir, connections=SINGLE_CONNECTIONS,
        pid=poulpe.pid, token=token, **wrk_settings(ctx),
    )  # fmt: skip
    poulpe.stop()
    if run.non_2xx or run.socket_errors:
        raise RuntimeError(f"{label}: {run.non_2xx} non-2xx answers, {run.socket_errors} socket errors")
    return run


async def measure(ctx: Context) -> Result:
    result = Result(
        NAME,
        TITLE,
        f"As intake's single-job row (wrk, {SINGLE_CONNECTIONS} connections, a fresh poulpe on an empty SQLite file "
        f"per run), with `--token` and with `--tokens` of {ENTRIES:,} entries, each its own tenant, the last one's "
        f"token used (its jobs get the tenant's id prefix and key); {ROUNDS} rounds, the side that goes first "
        "swapping every round, each side's mean.",
    )
    path, tenant_token = tokens_file(ctx)
    single: list[wrk.WrkRun] = []
    many: list[wrk.WrkRun] = []
    for n in range(ROUNDS):
        for side in ("token", "tokens") if n % 2 == 0 else ("tokens", "token"):  # the order swaps every round
            ctx.log(f"round {n + 1}: --{side}")
            if side == "token":
                single.append(await intake(ctx, f"token-{n}", "s3cret", "--token", "s3cret"))
            else:
                many.append(await intake(ctx, f"tokens-{n}", tenant_token, "--tokens", path))
    one, file = (sum(run.rps for run in runs) / ROUNDS for runs in (single, many))
    result.add(
        f"intake with a tokens file of {ENTRIES:,} (a tenant's token)",
        file,
        "req/s",
        peer="one --token, same run",
        peer_value=one,
        target=f"≥ {RATIO_TARGET:.0%} of one --token",
        met=at_least(file / one, RATIO_TARGET),
    )
    cpu = [sum(run.cpu_us_per_request or 0.0 for run in runs) / ROUNDS for runs in (single, many)]
    if all(cpu):
        result.notes.append(
            f"CPU per request (all of poulpe's threads, user + system; a figure other load on the machine changes "
            f"less than req/s): {cpu[1]:,.0f} µs with the tokens file, {cpu[0]:,.0f} µs with one --token "
            f"({cpu[0] / cpu[1]:.0%})."
        )
    result.raw = {"token_rps": [r.rps for r in single], "tokens_rps": [r.rps for r in many], "cpu_us": cpu}
    return result

"""Client processes of the bench, each in its own process so it never shares a core's event loop with the bench.

    python -m bench.client burst --lib aiohttp|httpx --url URL --n N --concurrency 64 --max-seconds S
    python -m bench.client spawn --loop asyncio|uvloop --program PATH --n N --concurrency 8 --max-seconds S
    python -m bench.client longpoll --url BASE --prefix lp- --n N --timeout 120 --max-seconds S

`burst` and `spawn` print one JSON line with their figures. `longpoll` prints `sent <k>` as requests go out,
`all-sent <k>` once every request's headers are on the wire, then holds the polls until killed (or max-seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from typing import Any

from bench.procs import raise_nofile


async def _burst_aiohttp(url: str, n: int, concurrency: int, deadline: float) -> tuple[int, int]:
    import aiohttp

    done = errors = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal done, errors
            while done + errors < n and time.monotonic() < deadline:
                try:
                    async with session.get(url) as response:
                        await response.read()
                        if response.status == 200:
                            done += 1
                        else:
                            errors += 1
                except aiohttp.ClientError:
                    errors += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done, errors


async def _burst_httpx(url: str, n: int, concurrency: int, deadline: float) -> tuple[int, int]:
    import httpx

    done = errors = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def worker() -> None:
            nonlocal done, errors
            while done + errors < n and time.monotonic() < deadline:
                try:
                    response = await client.get(url)
                    if response.status_code == 200:
                        done += 1
                    else:
                        errors += 1
                except httpx.HTTPError:
                    errors += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done, errors


async def burst(args: argparse.Namespace) -> dict[str, Any]:
    run = _burst_aiohttp if args.lib == "aiohttp" else _burst_httpx
    # A short warm-up opens the connections and fills caches before the clock starts.
    await run(args.url, min(args.n // 10, 1000), args.concurrency, time.monotonic() + 5)
    start, cpu = time.monotonic(), time.process_time()
    done, errors = await run(args.url, args.n, args.concurrency, start + args.max_seconds)
    elapsed, cpu = time.monotonic() - start, time.process_time() - cpu
    return {"lib": args.lib, "done": done, "errors": errors, "elapsed_s": elapsed, "rps": done / elapsed, "cpu_s": cpu}


async def spawn(args: argparse.Namespace) -> dict[str, Any]:
    done = errors = 0
    deadline = time.monotonic() + args.max_seconds

    async def worker() -> None:
        nonlocal done, errors
        while done + errors < args.n and time.monotonic() < deadline:
            proc = await asyncio.create_subprocess_exec(
                args.program, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
            )
            await proc.communicate()
            if proc.returncode == 0:
                done += 1
            else:
                errors += 1

    start = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    elapsed = time.monotonic() - start
    return {"loop": args.loop, "done": done, "errors": errors, "elapsed_s": elapsed, "per_s": done / elapsed}


async def longpoll(args: argparse.Namespace) -> dict[str, Any]:
    import aiohttp

    sent = answered = failed = 0
    all_sent, progress = asyncio.Event(), asyncio.Event()

    async def on_sent(session: Any, ctx: Any, params: Any) -> None:
        nonlocal sent
        sent += 1
        progress.set()
        if sent % 1000 == 0:
            print(f"sent {sent}", flush=True)
        if sent == args.n:
            all_sent.set()

    trace = aiohttp.TraceConfig()
    trace.on_request_headers_sent.append(on_sent)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=args.timeout + 30)
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, trace_configs=[trace]) as session:

        async def poll(i: int) -> None:
            nonlocal answered, failed
            try:
                async with session.get(f"{args.url}/task_resp/{args.prefix}{i}?timeout={args.timeout:g}") as resp:
                    await resp.read()
                    answered += 1
                    if answered <= 10:
                        print(f"answered {args.prefix}{i} {resp.status}", flush=True)
            except (aiohttp.ClientError, TimeoutError) as exc:
                failed += 1
                progress.set()
                if failed <= 10:
                    print(f"failed {args.prefix}{i} {exc!r}", flush=True)

        tasks = []
        # Open the connections in steps, so the server's accept backlog never overflows (SYN retries cost 1 s+).
        for start in range(0, args.n, args.step):
            tasks.extend(asyncio.create_task(poll(i)) for i in range(start, min(start + args.step, args.n)))
            step_deadline = time.monotonic() + 10
            while sent + failed < len(tasks) and time.monotonic() < step_deadline:
                progress.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(progress.wait(), step_deadline - time.monotonic())
        with_deadline = max(1.0, args.max_seconds - 1)
        try:
            await asyncio.wait_for(all_sent.wait(), timeout=30)
            print(f"all-sent {sent}", flush=True)
        except TimeoutError:
            print(f"not-all-sent {sent} failed {failed}", flush=True)
        await asyncio.wait(tasks, timeout=with_deadline)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {"sent": sent, "answered": answered, "failed": failed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    b = sub.add_parser("burst")
    b.add_argument("--lib", choices=["aiohttp", "httpx"], required=True)
    b.add_argument("--url", required=True)
    b.add_argument("--n", type=int, default=20_000)
    b.add_argument("--concurrency", type=int, default=64)
    b.add_argument("--max-seconds", type=float, default=60)
    s = sub.add_parser("spawn")
    s.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    s.add_argument("--program", required=True)
    s.add_argument("--n", type=int, default=2000)
    s.add_argument("--concurrency", type=int, default=8)
    s.add_argument("--max-seconds", type=float, default=60)
    lp = sub.add_parser("longpoll")
    lp.add_argument("--url", required=True)
    lp.add_argument("--prefix", default="lp-")
    lp.add_argument("--n", type=int, default=10_000)
    lp.add_argument("--step", type=int, default=500)
    lp.add_argument("--timeout", type=float, default=120)
    lp.add_argument("--max-seconds", type=float, default=150)
    args = parser.parse_args()

    raise_nofile()
    what = {"burst": burst, "spawn": spawn, "longpoll": longpoll}[args.what]
    loop_name = getattr(args, "loop", "asyncio")
    if loop_name == "uvloop":
        import uvloop

        result = uvloop.run(what(args))
    else:
        result = asyncio.run(what(args))
    print(json.dumps(result), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()

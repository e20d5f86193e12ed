"""The other asyncio HTTP clients, run from .venv-peers (bench/run.sh makes it; they are no dependency of poulpe):

    .venv-peers/bin/python -m bench.peer_clients --lib aiosonic|curl_cffi|rnet|aiohttp --url URL --n N

Each sends GETs through one shared client, `--concurrency` at once, reads every body, and prints one JSON line like
bench.client's burst: done, errors, elapsed_s, rps, cpu_s (this process, user + system). Standard library only
besides the client measured, so it runs in a venv that holds none of poulpe.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

Get = Callable[[str], Awaitable[int]]  # a GET whose body is read; its status


async def _aiosonic(concurrency: int) -> tuple[Get, Callable[[], Awaitable[None]]]:
    import aiosonic  # type: ignore[import-not-found]
    from aiosonic.pools import PoolConfig  # type: ignore[import-not-found]

    connector = aiosonic.TCPConnector(pool_configs={":default": PoolConfig(size=concurrency)})
    client = aiosonic.HTTPClient(connector)

    async def get(url: str) -> int:
        response = await client.get(url)
        await response.content()
        return int(response.status_code)

    return get, client.aclose


async def _curl_cffi(concurrency: int) -> tuple[Get, Callable[[], Awaitable[None]]]:
    from curl_cffi.requests import AsyncSession  # type: ignore[import-not-found]

    session = AsyncSession(max_clients=concurrency)

    async def get(url: str) -> int:
        response = await session.get(url)
        return int(response.status_code)

    return get, session.close


async def _rnet(concurrency: int) -> tuple[Get, Callable[[], Awaitable[None]]]:
    import rnet  # type: ignore[import-not-found]

    client = rnet.Client()

    async def get(url: str) -> int:
        response = await client.get(url)
        await response.bytes()
        status = response.status
        return int(status.as_int() if hasattr(status, "as_int") else status)

    async def close() -> None:
        pass

    return get, close


async def _aiohttp(concurrency: int) -> tuple[Get, Callable[[], Awaitable[None]]]:
    import aiohttp

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency))

    async def get(url: str) -> int:
        async with session.get(url) as response:
            await response.read()
            return response.status

    return get, session.close


CLIENTS = {"aiosonic": _aiosonic, "curl_cffi": _curl_cffi, "rnet": _rnet, "aiohttp": _aiohttp}


async def _run(get: Get, url: str, n: int, concurrency: int, deadline: float) -> tuple[int, int]:
    done = errors = 0

    async def worker() -> None:
        nonlocal done, errors
        while done + errors < n and time.monotonic() < deadline:
            try:
                status = await get(url)
            except Exception:
                errors += 1
                continue
            if status == 200:
                done += 1
            else:
                errors += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done, errors


async def burst(args: argparse.Namespace) -> dict[str, Any]:
    get, close = await CLIENTS[args.lib](args.concurrency)
    try:
        await _run(get, args.url, min(args.n // 10, 1000), args.concurrency, time.monotonic() + 5)  # warm-up
        start, cpu = time.monotonic(), time.process_time()
        done, errors = await _run(get, args.url, args.n, args.concurrency, start + args.max_seconds)
        elapsed, cpu = time.monotonic() - start, time.process_time() - cpu
    finally:
        await close()
    return {"lib": args.lib, "done": done, "errors": errors, "elapsed_s": elapsed, "rps": done / elapsed, "cpu_s": cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lib", choices=sorted(CLIENTS), required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--max-seconds", type=float, default=60)
    print(json.dumps(asyncio.run(burst(parser.parse_args()))), flush=True)


if __name__ == "__main__":
    main()

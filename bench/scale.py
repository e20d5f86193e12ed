"""Past one Redis: jobs/s for 1 and 3 poulpe processes on one Redis and on a Redis Cluster (--partitions 6), and
what `--redis_replicas 1` costs."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time

from bench import api
from bench.clients import start_target
from bench.context import Context
from bench.procs import Proc, cpu_seconds, free_port
from bench.redis import wait_redis
from bench.results import Result

NAME, TITLE = "scale", "Past one Redis: processes, replicas and a cluster"
WORKERS = 64  # per process


def start_redis(ctx: Context, name: str, replica_of: int | None = None) -> Proc:
    port = free_port()
    home = ctx.workdir / name
    home.mkdir()
    exe = shutil.which("redis-server") or "redis-server"
    args = [exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(home), "--save", ""]
    args += ["--appendonly", "yes", "--appendfsync", "everysec", "--repl-diskless-sync-delay", "0"]
    if replica_of is not None:
        args += ["--replicaof", "127.0.0.1", str(replica_of)]
    return ctx.procs._add(Proc(name, args, home / "redis.log", port=port)).start()


def start_cluster(ctx: Context) -> list[Proc]:
    """3 primaries (no replicas: the machine has 2 cores), joined by redis-cli; ports low enough for the bus port."""
    nodes = []
    for n in range(3):
        port = free_port()
        while port > 55535:
            port = free_port()
        home = ctx.workdir / f"node{n}"
        home.mkdir()
        args = [shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind", "127.0.0.1"]
        args += ["--dir", str(home), "--save", "", "--appendonly", "yes", "--appendfsync", "everysec"]
        args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        nodes.append(ctx.procs._add(Proc(f"node{n}", args, home / "redis.log", port=port)).start())
    addresses = [f"127.0.0.1:{node.port}" for node in nodes]
    time.sleep(0.5)
    subprocess.run(["redis-cli", "--cluster", "create", *addresses, "--cluster-yes"], check=True, capture_output=True)
    return nodes


async def run(
    ctx: Context, url: str, servers: list[Proc], target: str, processes: int, n: int, flags: list[str]
) -> tuple[float, float, float]:
    """(jobs acknowledged per s while submitting, jobs ended per s from the first submit to the last end, the
    redis-servers' CPU µs per job)."""
    pids = [server.popen.pid for server in servers if server.popen is not None]
    name = f"poulpe-{processes}-{len(flags)}"
    procs = [
        ctx.procs.poulpe(f"{name}-{i}", "--redis", url, "--max_retry", "0", *flags, workers=WORKERS).start()
        for i in range(processes)
    ]
    for proc in procs:
        await asyncio.to_thread(proc.wait_http, "/health")
    job = {"method": "GET", "name": f"{target}/job"}
    async with api.session() as session:
        clients = [api.PoulpeClient(proc.url, session) for proc in procs]
        start, cpu = time.monotonic(), sum(cpu_seconds(pid) for pid in pids)
        # one submitter per process at once, batches of 1,000
        await asyncio.gather(
            *(clients[i % processes].submit([job] * min(1000, n - first)) for i, first in enumerate(range(0, n, 1000)))
        )
        submitted = time.monotonic()
        end = await clients[0].wait_finished(n, within=ctx.pick(300, 60), interval=0.05)
        cpu = sum(cpu_seconds(pid) for pid in pids) - cpu
    for proc in procs:
        proc.stop()
    return n / (submitted - start), n / (end - start), cpu / n * 1e6


async def measure(ctx: Context) -> Result:
    n = ctx.pick(10_000, 2_000)
    result = Result(
        NAME,
        TITLE,
        f"{n:,} immediate GET jobs to bench/target.py, posted in batches of 1,000 (all batches at once, spread over"
        f" the processes); --workers {WORKERS} per process; redis-server with AOF (appendfsync everysec). Accepted/s:"
        " from the first submit until every batch is acknowledged; ended/s: until /sys_info counts them all ended."
        " With --redis_replicas 1, the same primary has one replica (another redis-server on this machine) and poulpe"
        " sends WAIT 1 after each batch of writes. The cluster: 3 primaries without replicas (redis-cli --cluster"
        " create), poulpe with --partitions 6. Redis is flushed between runs.",
    )
    target = await start_target(ctx)
    primary = start_redis(ctx, "primary")
    url = f"redis://127.0.0.1:{primary.port}/0"
    admin = await wait_redis(url)
    try:
        plain: dict[int, tuple[float, float, float]] = {}
        for processes in (1, 3):
            await admin.flushall()
            ctx.log(f"poulpe x{processes}")
            plain[processes] = await run(ctx, url, [primary], target.url, processes, n, [])
            cpu = plain[processes][2]
            result.notes.append(f"{processes} process(es), no replica: redis-server used {cpu:.0f} µs of CPU per job"
                                " (one thread: 1 s / that is about the jobs/s one shard carries).")  # fmt: skip
        replica = start_redis(ctx, "replica", replica_of=primary.port)
        for _ in range(200):
            if (await admin.info("replication")).get("connected_slaves") == 1:
                break
            await asyncio.sleep(0.05)
        for processes in (1, 3):
            await admin.flushall()
            ctx.log(f"poulpe x{processes} --redis_replicas 1")
            flags = ["--redis_replicas", "1"]
            accepted, ended, _ = await run(ctx, url, [primary], target.url, processes, n, flags)
            s = "es" if processes > 1 else ""
            result.add(f"{processes} process{s}: jobs accepted, --redis_replicas 1", accepted, "jobs/s",
                       "without replicas", plain[processes][0])  # fmt: skip
            result.add(f"{processes} process{s}: jobs ended, --redis_replicas 1", ended, "jobs/s",
                       "without replicas", plain[processes][1])  # fmt: skip
        result.add("3 processes beside 1: jobs ended", plain[3][1], "jobs/s", "1 process", plain[1][1])
        replica.stop()
        primary.stop()
        nodes = start_cluster(ctx)
        cluster_url = "redis+cluster://" + ",".join(f"127.0.0.1:{node.port}" for node in nodes) + "/"
        await asyncio.sleep(1.0)  # the cluster agrees on its slots
        for processes in (1, 3):
            for node in nodes:
                client = await wait_redis(f"redis://127.0.0.1:{node.port}/0")
                await client.flushall()
                await client.aclose()
            ctx.log(f"poulpe x{processes} on a 3-primary cluster, --partitions 6")
            s = "es" if processes > 1 else ""
            accepted, ended, cpu = await run(ctx, cluster_url, nodes, target.url, processes, n, ["--partitions", "6"])
            result.add(f"{processes} process{s} on a 3-primary cluster, --partitions 6: jobs ended", ended, "jobs/s",
                       "one Redis", plain[processes][1])  # fmt: skip
            result.notes.append(f"cluster, {processes} process(es): {accepted:,.0f} jobs/s accepted; the 3 primaries"
                                f" used {cpu:.0f} µs of CPU per job in all.")  # fmt: skip
    finally:
        await admin.aclose()
    return result

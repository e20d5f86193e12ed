"""The Redis clients of a URL: one server, Sentinel, or Redis Cluster (`redis+cluster://host:port,host:port/`).

On a cluster, a namespace is one hash slot, so one primary serves it.

Reads and publishes go through redis-py's cluster client (it follows MOVED and fail-overs by itself). Writes and
claims go to the slot's primary on a plain client of their own, found here: they need what a plain connection gives
(knowing whether a request left, and `WAIT` on the very connection that wrote, for --redis_replicas). When that
primary stops answering or answers MOVED, the owner is looked up again (`CLUSTER SLOTS` from any node that answers),
so writes follow a fail-over to the promoted replica without a restart.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff
from redis.crc import key_slot
from redis.exceptions import ClusterError, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger("poulpe.store.redis")
SCHEME = "redis+cluster://"
DOWN = (RedisConnectionError, RedisTimeoutError, OSError, ClusterError)  # Redis did not answer


def connect(url: str, password: str | None, *, retries: int = 2, socket_timeout: float | None = 5.0) -> aioredis.Redis:
    """A client for `redis://`, `rediss://`, `unix://`, `redis+sentinel://host:port[,host:port]/service[/db]` or
    `redis+cluster://host:port[,host:port]/` (redis-py's cluster client; redis_cluster.py).

    Commands give up within seconds when Redis is away (at once when it refuses connections), so intake answers
    503 instead of hanging.
    """
    options: dict[str, Any] = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": 2.0,
        "socket_keepalive": True,
        "retry": Retry(ExponentialBackoff(cap=0.2, base=0.02), retries),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
        "health_check_interval": 30,
    }
    if password:
        options["password"] = password
    if is_cluster(url):
        # the same commands as a plain client, each routed by its key
        return cluster_client(url, options)  # type: ignore[return-value]
    if url.startswith("redis+sentinel://"):
        parts = urlsplit(url)
        hosts = [_host_port(h, 26379) for h in parts.netloc.split(",")]
        path = [p for p in parts.path.split("/") if p]
        service, db = path[0], int(path[1]) if len(path) > 1 else 0
        sentinel_options = {k: v[0] for k, v in parse_qs(parts.query).items()}
        sentinel = Sentinel(hosts, sentinel_kwargs=sentinel_options or None, **options)
        master: aioredis.Redis = sentinel.master_for(service, db=db)
        return master
    return aioredis.Redis.from_url(url, **options)


def _host_port(text: str, default_port: int) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return (host, int(port)) if host else (text, default_port)


def is_cluster(url: str) -> bool:
    return url.startswith(SCHEME)


def nodes(url: str) -> list[tuple[str, int]]:
    """The startup nodes of a `redis+cluster://h:p,h:p/` URL (port 6379 when not given)."""
    out = []
    for text in urlsplit(url).netloc.rsplit("@", 1)[-1].split(","):
        host, _, port = text.rpartition(":")
        out.append((host, int(port)) if host else (text, 6379))
    return out


def cluster_client(url: str, options: dict[str, Any]) -> RedisCluster:
    cluster_options = {k: v for k, v in options.items() if k not in ("retry_on_error", "health_check_interval")}
    startup = [ClusterNode(host, port) for host, port in nodes(url)]
    return RedisCluster(startup_nodes=startup, cluster_error_retry_attempts=3, **cluster_options)


class SlotOwner:
    """A plain client to the primary serving `key`'s slot, looked up again after `forget()`."""

    def __init__(self, url: str, key: str, make: Callable[[str, int], aioredis.Redis]) -> None:
        self.slot = key_slot(key.encode())
        self.known = nodes(url)  # every node seen so far: any of them can say who serves the slot
        self._make = make
        self._client: aioredis.Redis | None = None
        self.address: tuple[str, int] | None = None

    async def client(self) -> aioredis.Redis:
        """The owner's client; raises ConnectionError when no node answers or none serves the slot."""
        if self._client is None:
            address = await self._look_up()
            if address != self.address and self.address is not None:
                log.warning("redis cluster: slot %d is now served by %s:%d", self.slot, *address)
            self.address = address
            self._client = self._make(*address)
        return self._client

    async def forget(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def _look_up(self) -> tuple[str, int]:
        for host, port in list(self.known):
            probe = self._make(host, port)
            try:
                ranges = await probe.execute_command("CLUSTER SLOTS")  # type: ignore[no-untyped-call]
            except (RedisError, OSError):
                continue
            finally:
                await probe.aclose()
            for start, end, primary, *replicas in _ranges(ranges):
                for node in (primary, *replicas):
                    if node not in self.known:
                        self.known.append(node)
                if start <= self.slot <= end:
                    return primary
        raise ConnectionError(f"no redis cluster node answers for slot {self.slot}")


def _ranges(reply: Any) -> list[tuple[int, int, tuple[str, int], tuple[str, int]]]:
    """CLUSTER SLOTS as (start, end, primary, replicas...), addresses as (host, port)."""
    out = []
    for entry in reply if isinstance(reply, list) else []:
        start, end, *servers = entry
        addresses = [(_text(s[0]), int(s[1])) for s in servers]
        out.append((int(start), int(end), *addresses))
    return out  # type: ignore[return-value]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

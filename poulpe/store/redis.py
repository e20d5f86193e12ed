"""The Redis store: every job and index in Redis, so several poulpe processes share one workload.

Writes go through one pipeline at a time (`_flush_forever`): what is issued while a round trip is under way leaves
together in the next one, in issue order. That is Redis's group commit: a busy process pays one round trip for
many writes, not one per step. Multi-key steps are Lua scripts (redis_scripts.py), loaded once and called by sha.

A pipeline that could not even connect stored nothing (intake answers a plain 503). One whose reply was lost may
have been applied: it is sent again, on a new connection, once Redis answers again (`_settle`). Every write is
idempotent for that: `add` knows the record it stored by its `seq`, `save` writes the same record again. Only when
Redis stays away longer than `patience` is the outcome reported unknown (OutcomeUnknown: 503 with the ids).

Claiming is shared: a due job sits in the namespace's `due` set until one process claims it with a lease, which
it renews while it holds the job. A lease that runs out means its process died: the next claim, by any process,
puts the job back as due. Processes learn of new work, finished jobs and cancellations by pub/sub.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, OutOfMemoryError, ReadOnlyError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from poulpe.errors import NotHeld, OutcomeUnknown, StoreUnavailable
from poulpe.job import FINAL, CallbackDelivery, Job, Method, Status, decode_job, encode_job
from poulpe.store.base import Page, Pending, Store
from poulpe.store.redis_scripts import SCRIPTS

log = logging.getLogger(__name__)
_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)
_STATUSES = tuple(s.value for s in Status)
_WAITING = (Status.SCHEDULED.value, Status.QUEUED.value, Status.RETRYING.value, Status.RUNNING.value)
_CHUNK = 500
# Redis answers but takes no write: out of memory under `noeviction`, a read-only replica, a failed RDB save
_REFUSALS = (OutOfMemoryError, ReadOnlyError)
_ADD_ARGS = 7  # arguments per job of the `add` script
PATIENCE_S = 5.0  # how long a write whose reply was lost is sent again before its outcome is reported unknown
_STOPPED = "interrupted: the poulpe process running it stopped"
_UNRECORDED = "interrupted: the poulpe process that claimed it stopped (this attempt may not have begun)"


class _NotSent(Exception):
    """No connection could be made: the request never left this process."""


class Claimed(NamedTuple):
    """What one claim brought: the jobs now leased to this process, and when to claim again at the latest."""

    jobs: list[Job]
    next_due: float | None
    next_lease_end: float | None


def namespace(prefix: str) -> str:
    """`poulpe:` → `{poulpe}:`: the whole prefix is the hash tag, so one namespace is one Cluster slot."""
    if "{" in prefix:
        return prefix
    return "{" + prefix.rstrip(":") + "}:"


def connect(url: str, password: str | None, *, retries: int = 2, socket_timeout: float | None = 5.0) -> aioredis.Redis:
    """A client for `redis://`, `rediss://`, `unix://` or `redis+sentinel://host:port[,host:port]/service[/db]`.

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


class RedisStore(Store):
    kind = "redis"
    shared = True

    def __init__(
        self, url: str, *, prefix: str = "poulpe:", owner: str | None = None, patience: float | None = None
    ) -> None:
        self.url = url
        self.patience = PATIENCE_S if patience is None else patience
        self.base = namespace(prefix)
        self.owner = owner or f"poulpe-{secrets.token_hex(6)}"  # this process's name on its leases
        self._due = self.base + "due"
        self._redis: aioredis.Redis | None = None
        self._once: aioredis.Redis | None = None  # writes and claims: a lost answer must be known, not sent blindly
        self._sha: dict[str, str] = {}
        self._ops: list[tuple[str, list[Any], asyncio.Future[Any] | None]] = []
        self._wake = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._closing = False
        self._down_since: float | None = None
        self._write_fault: str | None = None

    # --- connection ------------------------------------------------------------------------------------------
    async def open(self) -> None:
        """Connects lazily: poulpe starts while Redis is away (intake answers 503 until it is back)."""
        self._redis = connect(self.url, os.environ.get("POULPE_REDIS_PASSWORD"))
        self._once = connect(self.url, os.environ.get("POULPE_REDIS_PASSWORD"), retries=0)
        self._sha = {name: hashlib.sha1(text.encode()).hexdigest() for name, text in SCRIPTS.items()}
        with contextlib.suppress(StoreUnavailable):
            await self._load_scripts()
        self._flusher = asyncio.create_task(self._flush_forever(), name="poulpe-redis-writes")

    async def close(self) -> None:
        if self._flusher is not None:
            self._closing = True  # writes issued before the close leave first
            self._wake.set()
            await self._flusher
            self._flusher = None
        for client in (self._redis, self._once):
            if client is not None:
                await client.aclose()
        self._redis = self._once = None

    @property
    def redis(self) -> aioredis.Redis:
        if self._redis is None:
            raise StoreUnavailable("the store is closed")
        return self._redis

    async def _load_scripts(self) -> None:
        async with self._reachable():
            for name, text in SCRIPTS.items():
                self._sha[name] = await self.redis.script_load(text)

    @contextlib.asynccontextmanager
    async def _reachable(self) -> AsyncIterator[None]:
        """Redis errors become StoreUnavailable (503: nothing was accepted); the first and the last are logged."""
        try:
            yield
        except _DOWN as exc:
            self._went_away(exc)
            raise StoreUnavailable("the job store (redis) is unreachable") from None
        self._came_back()

    def _went_away(self, exc: BaseException) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.error("redis is unreachable: %s", type(exc).__name__)

    def _came_back(self) -> None:
        if self._down_since is not None:
            log.warning("redis answers again after %.1f s", time.monotonic() - self._down_since)
            self._down_since = None

    async def ping(self) -> bool:
        """True when Redis answers and, after a refused write, takes a small write again (/health)."""
        try:
            async with self._reachable():
                if not await self.redis.ping():
                    return False
                if self._write_fault is not None:
                    await self.redis.set(self.base + "probe", "1", ex=60)
                    self._write_fault = None
                return True
        except (StoreUnavailable, RedisError) as exc:
            self._refused(exc)
            return False

    def write_fault(self) -> str | None:
        return self._write_fault

    def _refused(self, exc: BaseException) -> None:
        if isinstance(exc, _REFUSALS) or (isinstance(exc, RedisError) and "MISCONF" in str(exc)[:20]):
            self._write_fault = f"the store (redis) cannot take writes: {str(exc)[:200]}"

    # --- the write pipeline ----------------------------------------------------------------------------------
    def _call(self, script: str, args: list[Any], *, wait: bool = True) -> asyncio.Future[Any] | None:
        if self._flusher is None:
            raise StoreUnavailable("the store is closed")
        fut = asyncio.get_running_loop().create_future() if wait else None
        self._ops.append((script, args, fut))
        self._wake.set()
        return fut

    async def _script(self, script: str, args: list[Any]) -> Any:
        fut = self._call(script, args)
        assert fut is not None
        return await fut

    async def _flush_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            ops, self._ops = self._ops, []
            if ops:
                await self._run_batch(ops)
            if self._closing and not self._ops:
                return

    async def _run_batch(self, ops: list[tuple[str, list[Any], asyncio.Future[Any] | None]]) -> None:
        try:
            results = await self._settle(ops)
        except OutcomeUnknown as exc:
            log.error("redis lost the reply to %d writes and stayed away %.1f s: %s", len(ops), self.patience, exc)
            results = [_unknown(name, args) for name, args, _ in ops]
        except StoreUnavailable as exc:
            results = [exc] * len(ops)
        except RedisError as exc:
            log.error("redis refused a batch of %d writes: %s", len(ops), exc)
            self._refused(exc)
            results = [StoreUnavailable("the job store (redis) refused the write")] * len(ops)
        else:
            self._write_fault = None
        for (name, _, fut), result in zip(ops, results, strict=True):
            if fut is None:
                if isinstance(result, Exception):
                    log.warning("a %s write was not stored: %s", name, result)
                    self._refused(result)
            elif not fut.done():
                if isinstance(result, StoreUnavailable):
                    fut.set_exception(result)
                elif isinstance(result, Exception):
                    log.error("redis script %s failed: %s", name, result)
                    self._refused(result)
                    fut.set_exception(StoreUnavailable("the job store (redis) refused the write"))
                else:
                    fut.set_result(result)

    async def _settle(self, ops: Sequence[tuple[str, list[Any], Any]]) -> list[Any]:
        """The batch's results, found out even when a reply is lost.

        A pipeline that never left (no connection) raises StoreUnavailable: nothing was stored. One that left and
        lost its reply may have been applied: it goes again on a new connection until Redis answers, for up to
        `patience` seconds, then raises OutcomeUnknown. Going again is safe: `add` of an id this very batch stored
        answers "stored" (the record carries the batch's seq), `save` writes the same record again. Scripts Redis
        forgot (it restarted) are loaded again and their calls sent again: a NOSCRIPT answer ran nothing.
        """
        results: list[Any] = [None] * len(ops)
        todo = list(range(len(ops)))
        deadline: float | None = None  # set once a request may have reached Redis
        delay = 0.02
        while True:
            try:
                async with asyncio.timeout(None if deadline is None else max(0.0, deadline - time.monotonic())):
                    if any(isinstance(results[i], NoScriptError) for i in todo):
                        await self._load_scripts()
                    for i, result in zip(todo, await self._pipeline([ops[i] for i in todo]), strict=True):
                        results[i] = result
                self._came_back()
                todo = [i for i in todo if isinstance(results[i], NoScriptError)]
                if not todo:
                    return results
                continue
            except _NotSent as exc:
                self._went_away(exc.__cause__ or exc)
                if deadline is None:
                    raise StoreUnavailable("the job store (redis) is unreachable") from None
            except (*_DOWN, StoreUnavailable) as exc:  # TimeoutError included: the deadline passed mid-try
                self._went_away(exc)
                if deadline is None:
                    deadline = time.monotonic() + self.patience
            except RedisError as exc:
                if deadline is None:
                    raise
                raise OutcomeUnknown(f"the job store (redis) failed after losing a reply: {exc}", []) from None
            if time.monotonic() >= deadline:
                raise OutcomeUnknown("the job store (redis) lost the reply to the write", [])
            await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 0.5)

    async def _pipeline(self, ops: Sequence[tuple[str, list[Any], Any]]) -> list[Any]:
        """One round trip on the writes' client, which never sends anything twice by itself.

        The connection is made first: failing that raises _NotSent (nothing left this process). Any error after
        it is raised as it is: the scripts may have run.
        """
        if self._once is None:
            raise StoreUnavailable("the store is closed")
        try:
            connection = await self._once.connection_pool.get_connection()  # type: ignore[no-untyped-call]
        except _DOWN as exc:
            raise _NotSent() from exc
        pipe = self._once.pipeline(transaction=False)
        pipe.connection = connection  # released by the pipeline when it is done
        for name, args, _ in ops:
            pipe.evalsha(self._sha[name], 1, self._due, self.base, *args)
        try:
            results = list(await pipe.execute(raise_on_error=False))
        except BaseException:  # cancelled mid-read too: a late reply must not reach the connection's next user
            await connection.disconnect(nowait=True)
            raise
        for result in results:
            if isinstance(result, _DOWN):
                raise result
        return results

    async def _direct(self, name: str, args: list[Any]) -> Any:
        """One script call on its own round trip, on a client that never sends it twice."""
        if self._once is None:
            raise StoreUnavailable("the store is closed")
        async with self._reachable():
            try:
                return await self._once.evalsha(self._sha[name], 1, self._due, self.base, *args)
            except NoScriptError:
                await self._load_scripts()
                return await self._once.evalsha(self._sha[name], 1, self._due, self.base, *args)

    # --- writes ----------------------------------------------------------------------------------------------
    async def add(self, jobs: Sequence[Job]) -> list[tuple[Job, bool]]:
        args: list[Any] = []
        for job in jobs:  # _ADD_ARGS of them
            args += [job.id, encode_job(job), job.status.value, repr(job.run_at), job.seq, _place(job), job.attempts]
        known = await self._script("add", args)
        return [(job, False) if k == 0 else (decode_job(k), True) for job, k in zip(jobs, known, strict=True)]

    def _save_args(self, job: Job, *, token: str | None = None, held: bool = False) -> list[Any]:
        day = ""
        if job.finished_at is not None and job.status in (Status.SUCCEEDED, Status.DEAD):
            column = "succeeded" if job.status is Status.SUCCEEDED else "failed"
            day = f"{time.strftime('%Y-%m-%d', time.gmtime(job.finished_at))}:{column}"
        finished = repr(job.finished_at) if job.finished_at is not None else ""
        return [
            job.id,
            encode_job(job),
            job.status.value,
            repr(job.run_at),
            job.seq,
            token or self.owner,
            finished,
            day,
            _place(job),
            "1" if held else "0",
            repr(job.lease_until) if job.status is Status.RUNNING and job.lease_until is not None else "",
            job.attempts,
        ]

    async def save(self, job: Job) -> None:
        if not await self._script("save", self._save_args(job)):
            raise NotHeld(f"job {job.id} is held by another poulpe process")

    def save_soon(self, job: Job) -> None:
        self._call("save", self._save_args(job), wait=False)

    async def delete(self, job_id: str) -> bool:
        return bool(await self._script("delete", [job_id]))

    async def purge(self, finished_before: float) -> int:
        total = 0
        while True:
            purged = int(await self._script("purge", [repr(finished_before), 1000]))
            total += purged
            if purged < 1000:
                return total

    # --- QUEUE jobs and external workers ----------------------------------------------------------------------
    async def lease_queue(self, kind: str, n: int, holder: str, until: float, now: float) -> list[Job]:
        """Reserve atomically (LEASE_QUEUE), then record each attempt with a save that makes the worker the holder."""
        records = await self._script("lease_queue", [kind, repr(now), n, repr(until), holder])
        jobs = sorted((decode_job(r) for r in records), key=lambda j: (j.run_at, j.seq))
        for job in jobs:
            job.begin_attempt(None, holder, now)
            job.lease_holder, job.lease_until = holder, until
        # one pipeline for all of them; a reservation whose save fails is put back when its lease ends
        await asyncio.gather(
            *(self._script("save", self._save_args(job, token=_external(holder, job.attempts))) for job in jobs)
        )
        return jobs

    async def save_if_held(self, job: Job, holder: str) -> bool:
        token = _external(holder, job.attempts)
        return bool(await self._script("save", self._save_args(job, token=token, held=True)))

    async def expired_leases(self, now: float, limit: int) -> list[Job]:
        records = await self._script("expired", [repr(now), limit])
        return [decode_job(r) for r in records]

    async def next_due(self, kind: str) -> float | None:
        async with self._reachable():
            first = await self.redis.zrange(self.base + "q:" + kind, 0, 0, withscores=True)
        return float(first[0][1]) if first else None

    async def next_lease_end(self) -> float | None:
        async with self._reachable():
            first = await self.redis.zrange(self.base + "xlease", 0, 0, withscores=True)
        return float(first[0][1]) if first else None

    async def set_callback_delivery(self, job_id: str, delivery: CallbackDelivery) -> bool:
        """Read, change the one field, and compare-and-set: a concurrent write makes it read again."""
        for _ in range(10):
            async with self._reachable():
                record = await self.redis.get(self.base + "job:" + job_id)
            if record is None:
                return False
            job = decode_job(record)
            if not job.final:
                return False
            job.callback_delivery = delivery
            if await self._script("swap", [job_id, record, encode_job(job)]):
                return True
        return False

    # --- claiming (shared by every process on this namespace) -------------------------------------------------
    async def claim(
        self, n: int, lease: float, now: float | None = None, *, recheck: Sequence[str] | None = None
    ) -> Claimed:
        """Lease up to `n` due jobs to this process (in due order, then acceptance order).

        A claim is never sent twice by the client: when its answer is lost (Redis restarted), the jobs it leased
        are unknown here. Call again with `recheck` = the ids this process holds, and the others go back.

        A job comes back `running` when an attempt of it began elsewhere (its process stopped): the caller closes
        that attempt as interrupted. An attempt that may have begun without its `running` mark reaching Redis is
        closed here (the claim counted it), so the next attempt's number is always new.
        """
        now = time.time() if now is None else now
        args = [repr(now), n, repr(now + lease), self.owner, "1" if recheck is not None else "0", *(recheck or ())]
        # Straight to Redis, not behind the write pipeline: a worker waiting for work should not wait for writes.
        records, due, lease_end, tries = await self._direct("claim", args)
        jobs = [decode_job(r) for r in records]
        for job, attempt in zip(jobs, tries, strict=True):
            _count_unrecorded(job, int(attempt) - 1, now)
        jobs.sort(key=lambda j: (j.run_at, j.seq))
        return Claimed(jobs, float(due) if due else None, float(lease_end) if lease_end else None)

    async def renew(self, ids: Iterable[str], lease: float) -> list[str]:
        """Extend this process's leases on `ids`; returns the ids whose lease another process took."""
        ids = list(ids)
        if not ids:
            return []
        lost = await self._script("renew", [repr(time.time() + lease), self.owner, *ids])
        return [_text(i) for i in lost]

    async def request_cancel(self, job_id: str) -> None:
        """Ask whichever process runs the job to cancel it after its attempt."""
        async with self._reachable():
            await self.redis.publish(self.base + "cancel", job_id)

    async def delayed(self, cap: int) -> list[str]:
        """The next `cap` jobs waiting for their time, soonest first (sys_info)."""
        async with self._reachable():
            ids = await self.redis.zrange(self._due, 0, cap - 1)
        return [_text(i) for i in ids]

    def channels(self) -> dict[str, str]:
        return {name: self.base + name for name in ("work", "done", "cancel", "queued", "xlease")}

    # --- reads -----------------------------------------------------------------------------------------------
    async def get(self, job_id: str) -> Job | None:
        async with self._reachable():
            record = await self.redis.get(self.base + "job:" + job_id)
        return decode_job(record) if record is not None else None

    async def get_many(self, ids: Sequence[str]) -> list[Job]:
        out: list[Job] = []
        for start in range(0, len(ids), _CHUNK):
            keys = [self.base + "job:" + i for i in ids[start : start + _CHUNK]]
            async with self._reachable():
                records = await self.redis.mget(keys)
            out.extend(decode_job(r) for r in records if r is not None)
        return out

    async def pending(self) -> list[Pending]:
        out: list[Pending] = []
        for status in _WAITING:
            ids = await self._ids(self.base + "st:" + status, 0, -1, newest_first=False)
            out.extend(Pending(j.run_at, j.seq, j.id, j.status) for j in await self.get_many(ids) if not j.final)
        return out

    async def _ids(self, key: str, start: int, stop: int, *, newest_first: bool = True) -> list[str]:
        async with self._reachable():
            found = await (self.redis.zrevrange if newest_first else self.redis.zrange)(key, start, stop)
        return [_text(i) for i in found]

    async def list_jobs(
        self,
        *,
        status: Status | None = None,
        method: str | None = None,
        name: str | None = None,
        page: int = 1,
        size: int = 50,
    ) -> Page:
        index = self.base + ("st:" + status.value if status else "all")
        skip = (page - 1) * size
        if method is None and name is None:  # the index alone pages: one range read, then the records
            async with self._reachable():
                total = int(await self.redis.zcard(index))
            jobs = await self._in_order(await self._ids(index, skip, skip + size - 1))
            return Page(jobs, total)
        # Filters beyond status read the index newest first in chunks and keep what matches.
        matched: list[Job] = []
        total, start = 0, 0
        while True:
            ids = await self._ids(index, start, start + _CHUNK - 1)
            if not ids:
                return Page(matched, total)
            for job in await self._in_order(ids):
                if (method is None or job.method.value == method) and (name is None or job.name == name):
                    if skip <= total < skip + size:
                        matched.append(job)
                    total += 1
            start += _CHUNK

    async def ids(self, status: Status, limit: int) -> list[str]:
        return await self._ids(self.base + "st:" + status.value, 0, limit - 1) if limit > 0 else []

    async def _in_order(self, ids: list[str]) -> list[Job]:
        by_id = {job.id: job for job in await self.get_many(ids)}
        return [by_id[i] for i in ids if i in by_id]

    async def counts(self) -> dict[str, int]:
        async with self._reachable():
            found = await self.redis.hgetall(self.base + "count")
        counted = {_text(k): int(v) for k, v in found.items()}
        return {s: max(0, counted.get(s, 0)) for s in _STATUSES}

    async def day_counts(self, day: str) -> dict[str, int]:
        async with self._reachable():
            found = await self.redis.hgetall(self.base + "day:" + day)
        counted = {_text(k): int(v) for k, v in found.items()}
        return {"succeeded": counted.get("succeeded", 0), "failed": counted.get("failed", 0)}

    async def max_seq(self) -> int:
        async with self._reachable():
            top = await self.redis.zrevrange(self.base + "all", 0, 0, withscores=True)
        return int(top[0][1]) if top else 0

    # --- events ----------------------------------------------------------------------------------------------
    async def listen(
        self,
        on_message: Callable[[str, str], None],
        on_connected: Callable[[], None],
    ) -> None:
        """Deliver pub/sub messages as (channel name: work|done|cancel, payload) until cancelled.

        Reconnects with backoff when Redis goes away; `on_connected` runs after each (re)subscription, so the caller
        can look again at what it may have missed meanwhile.
        """
        names = {full.encode(): short for short, full in self.channels().items()}
        delay = 0.05
        # its own connection, which never times out waiting for messages and never reconnects behind our back:
        # after a break, messages were missed, and `on_connected` must run
        client = connect(self.url, os.environ.get("POULPE_REDIS_PASSWORD"), retries=0, socket_timeout=None)
        try:
            while True:
                try:
                    async with client.pubsub(ignore_subscribe_messages=True) as pubsub:
                        await pubsub.subscribe(*names)
                        delay = 0.05
                        on_connected()
                        async for message in pubsub.listen():
                            channel = names.get(message["channel"])
                            if channel is not None and message["type"] == "message":
                                on_message(channel, message["data"].decode())
                except (*_DOWN, RedisError) as exc:
                    if not isinstance(exc, _DOWN):
                        log.warning("redis pub/sub failed (it subscribes again): %s", exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
        finally:
            await client.aclose()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _host_port(text: str, default_port: int) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return (host, int(port)) if host else (text, default_port)


def _place(job: Job) -> str:
    """The waiting set a job belongs to: `due` (poulpe's workers), `q:<type>` (external workers), or none."""
    if job.status in FINAL:
        return ""
    return "q:" + job.name if job.method is Method.QUEUE else "due"


def _count_unrecorded(job: Job, began: int, now: float) -> None:
    """Count attempts a process may have begun on a claim without its `running` mark reaching Redis (it died first).

    `began` is the highest attempt number that may have begun (the claims counted it). Those attempts are closed as
    interrupted, so the claiming process runs the next number, never a repeated one. A job the dead process held
    ready without starting it is counted too: from Redis, the two look the same.
    """
    if job.attempts >= began:
        return
    if job.status is Status.RUNNING:
        job.end_attempt(False, _STOPPED, now)
    job.attempts = began - 1
    job.begin_attempt(None, None, now)
    job.end_attempt(False, _UNRECORDED, now)
    job.status = Status.QUEUED
    log.info("job %s: attempt %d may have begun on a process that stopped; it runs again", job.id, began)


def _unknown(name: str, args: list[Any]) -> StoreUnavailable:
    """What a write whose reply was lost tells its caller: for `add`, the ids it may have stored (SPEC 2.3)."""
    message = "the job store (redis) went away before confirming the write; its outcome is unknown"
    return OutcomeUnknown(message, args[0::_ADD_ARGS]) if name == "add" else StoreUnavailable(message)


def _external(holder: str, attempt: int) -> str:
    """The owner value of an external worker's lease: the worker and the attempt it holds."""
    return f"x:{holder}:{attempt}"

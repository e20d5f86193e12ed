"""The Redis store's link to Redis (redis.py builds the store's operations on it): the clients, sentinel included, the
Lua scripts, the write pipeline (its saves folded by redis_saves_fold.py) and pub/sub.

Writes go through one pipeline at a time (`_flush_forever`): what is issued while a round trip is under way leaves
together in the next one, in issue order: Redis's group commit (a busy process pays one round trip for many writes).
Multi-key steps are Lua scripts (redis_scripts.py, redis_claim.py), called by sha, arguments packed by redis_args.py.

A pipeline that could not even connect stored nothing (intake answers a plain 503). One whose reply was lost may
have been applied: it is sent again, on a new connection, once Redis answers again (`_settle`). Every write is
idempotent for that: `add` knows the record it stored by its `seq`, `save` writes the same record again. Only when
Redis stays away longer than `patience` is the outcome reported unknown (OutcomeUnknown: 503 with the ids).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import (
    ClusterError,
    MovedError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError

from poulpe.errors import OutcomeUnknown, StoreUnavailable
from poulpe.store.redis_actions import ACTION_SCRIPTS
from poulpe.store.redis_args import packed
from poulpe.store.redis_batches import BATCH_SCRIPTS
from poulpe.store.redis_claim import CLAIM
from poulpe.store.redis_clients import DOWN as _DOWN
from poulpe.store.redis_clients import SlotOwner, connect, is_cluster
from poulpe.store.redis_listen import RedisListen
from poulpe.store.redis_saves_fold import SAVES, fold_saves, unfold_answers
from poulpe.store.redis_scripts import STORE_SCRIPTS
from poulpe.store.redis_windows import DEBOUNCE
from poulpe.store.timing import Timed

log = logging.getLogger("poulpe.store.redis")
# a cluster node that no longer serves the namespace's slot: nothing was applied, ask who serves it now
_MOVED = (MovedError, TryAgainError, ClusterError, ReadOnlyError)
# Redis answers but takes no write: out of memory under `noeviction`, a read-only replica, a failed RDB save
_REFUSALS = (OutOfMemoryError, ReadOnlyError)
ADD_ARGS = 10  # arguments per job of the `add` script
SAVE_ARGS = 14  # arguments of a `save`
REPLICA_WAIT_MS = 2000  # how long a batch waits for --redis_replicas before its new jobs are answered 503
SCRIPTS = {**STORE_SCRIPTS, **BATCH_SCRIPTS, **ACTION_SCRIPTS, "claim": CLAIM, "debounce": DEBOUNCE, "saves": SAVES}


class _NotSent(Exception):
    """No connection could be made: the request never left this process."""


def namespace(prefix: str) -> str:
    """`poulpe:` → `{poulpe}:`: the whole prefix is the hash tag, so one namespace is one Cluster slot."""
    if "{" in prefix:
        return prefix
    return "{" + prefix.rstrip(":") + "}:"


class RedisLink(RedisListen, Timed):
    def __init__(
        self, url: str, *, prefix: str, patience: float, password: str | None = None, replicas: int = 0
    ) -> None:
        self.url = url
        self.replicas = replicas  # WAIT for them after each batch of writes (docs/scale.md)
        self._password = password  # Settings.redis_password: kept off the URL and the logs
        self.patience = patience
        self.base = namespace(prefix)
        self._due = self.base + "due"
        self._redis: aioredis.Redis | None = None
        self._once: aioredis.Redis | None = None  # writes and claims: a lost answer must be known, not sent blindly
        self._owner: SlotOwner | None = None  # on a cluster: writes and claims go to the primary of the slot
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
        self._redis = connect(self.url, self._password)
        if is_cluster(self.url):
            self._owner = SlotOwner(self.url, self._due, self._node_client)
        else:
            self._once = connect(self.url, self._password, retries=0)
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
        if self._owner is not None:
            await self._owner.forget()

    def _node_client(self, host: str, port: int, socket_timeout: float | None = 5.0) -> aioredis.Redis:
        """A plain client to one node of a cluster, which never sends anything twice by itself."""
        return connect(f"redis://{host}:{port}/0", self._password, retries=0, socket_timeout=socket_timeout)

    async def _writer(self) -> aioredis.Redis:
        """The client of writes and claims: the one server, or the primary serving the namespace's slot."""
        if self._owner is not None:
            return await self._owner.client()
        if self._once is None:
            raise StoreUnavailable("the store is closed")
        return self._once

    async def _lost_owner(self, results: Sequence[Any] = ()) -> None:
        """On a cluster, after a failure or a MOVED answer: find the slot's primary again before the next try."""
        if self._owner is not None and (not results or any(isinstance(r, _MOVED) for r in results)):
            await self._owner.forget()
            if results:
                raise RedisConnectionError("the namespace's slot moved to another node")

    @property
    def redis(self) -> aioredis.Redis:
        if self._redis is None:
            raise StoreUnavailable("the store is closed")
        return self._redis

    async def _load_scripts(self) -> None:
        async with self._reachable():
            client = await self._writer() if self._owner is not None else self.redis
            for name, text in SCRIPTS.items():
                self._sha[name] = await client.script_load(text)

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
        with self._timed("ping"):
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
        try:
            once = await self._writer()
            connection = await once.connection_pool.get_connection()  # type: ignore[no-untyped-call]
        except _DOWN as exc:
            await self._lost_owner()
            raise _NotSent() from exc
        pipe = once.pipeline(transaction=False)
        pipe.connection = connection  # released by the pipeline when it is done
        runs = fold_saves(ops)
        for name, args, _ in runs:
            pipe.evalsha(self._sha[name], 1, self._due, packed(self.base, args))
        if self.replicas:
            pipe.execute_command("WAIT", self.replicas, REPLICA_WAIT_MS)
        try:
            answers = list(await pipe.execute(raise_on_error=False))
        except BaseException:  # cancelled mid-read too: a late reply must not reach the connection's next user
            await connection.disconnect(nowait=True)
            await self._lost_owner()
            raise
        await self._lost_owner(answers)
        results = unfold_answers(runs, answers, len(ops))
        for result in results:
            if isinstance(result, _DOWN):
                raise result
        if self.replicas:
            return self._replicated(ops, results[:-1], results[-1])
        return results

    def _replicated(self, ops: Sequence[tuple[str, list[Any], Any]], results: list[Any], acked: Any) -> list[Any]:
        """With --redis_replicas: new jobs the replicas did not confirm in time are not acknowledged (503 with
        their ids, so a retry is safe); the batch's other writes stand (at least once covers them)."""
        if isinstance(acked, int) and acked >= self.replicas:
            return results
        log.warning("only %s of %d redis replicas confirmed a batch of %d writes", acked, self.replicas, len(ops))
        message = f"the job store (redis) did not get the job to {self.replicas} replicas in time (--redis_replicas)"
        unconfirmed = [OutcomeUnknown(message, args[0::ADD_ARGS]) if name == "add" else None for name, args, _ in ops]
        return [
            result if isinstance(result, Exception) or lost is None else lost
            for lost, result in zip(unconfirmed, results, strict=True)
        ]

    async def _direct(self, name: str, args: list[Any]) -> Any:
        """One script call on its own round trip, on a client that never sends it twice."""
        async with self._reachable():
            once = await self._writer()
            try:
                return await once.evalsha(self._sha[name], 1, self._due, packed(self.base, args))
            except NoScriptError:
                await self._load_scripts()
                return await once.evalsha(self._sha[name], 1, self._due, packed(self.base, args))
            except (*_DOWN, *_MOVED):
                if self._owner is None:
                    raise
                await self._lost_owner()
                raise RedisConnectionError("the namespace's primary did not answer") from None


def _unknown(name: str, args: list[Any]) -> StoreUnavailable:
    """What a write whose reply was lost tells its caller: for `add` and `debounce`, the ids it may have stored."""
    message = "the job store (redis) went away before confirming the write; its outcome is unknown"
    if name == "debounce":  # args: key, expected id, expected record, mode, then the id it stores
        return OutcomeUnknown(message, [args[4]])
    return OutcomeUnknown(message, args[0::ADD_ARGS]) if name == "add" else StoreUnavailable(message)

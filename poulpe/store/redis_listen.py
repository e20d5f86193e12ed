"""The Redis store's pub/sub: how a process hears of new work, finished jobs, cancellations and changed limits
(RedisLink inherits it)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from poulpe.store.redis_clients import DOWN as _DOWN
from poulpe.store.redis_clients import SlotOwner, connect

log = logging.getLogger("poulpe.store.redis")


class RedisListen:
    url: str
    base: str
    _due: str
    _password: str | None
    _owner: SlotOwner | None

    def _node_client(self, host: str, port: int, socket_timeout: float | None = 5.0) -> aioredis.Redis:
        raise NotImplementedError

    def channels(self) -> dict[str, str]:
        return {name: self.base + name for name in ("work", "done", "cancel", "queued", "xlease", "limits")}

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
        # On a cluster, any node hears every PUBLISH: it listens on the slot's primary, found again after a break.
        owner = SlotOwner(self.url, self._due, lambda h, p: self._node_client(h, p, None)) if self._owner else None
        client = None if owner else connect(self.url, self._password, retries=0, socket_timeout=None)
        try:
            while True:
                try:
                    if owner is not None:
                        client = await owner.client()
                    assert client is not None
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
                    if owner is not None:
                        await owner.forget()
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
        finally:
            if owner is not None:
                await owner.forget()
            elif client is not None:
                await client.aclose()

"""Where jobs live: one contract (base.Store), one backend per storage engine."""

from __future__ import annotations

from poulpe.settings import Settings
from poulpe.store.base import Store


def open_store(settings: Settings, *, owner: str) -> Store:
    """The backend the flags ask for; imported lazily so SQLite users need no Redis client.

    `owner` names this process on the jobs it leases from a shared store.
    """
    if settings.redis:
        from poulpe.store.redis import RedisStore

        password = settings.redis_password.reveal() if settings.redis_password else None
        if settings.partitions > 1:
            from poulpe.store.redis_partitions import PartitionedStore

            return PartitionedStore(
                settings.redis,
                partitions=settings.partitions,
                prefix=settings.redis_prefix,
                owner=owner,
                password=password,
                replicas=settings.redis_replicas,
            )
        return RedisStore(
            settings.redis,
            prefix=settings.redis_prefix,
            owner=owner,
            password=password,
            replicas=settings.redis_replicas,
        )
    from poulpe.store.sqlite import SqliteStore

    return SqliteStore(settings.data)

"""Where jobs live: one contract (base.Store), one backend per storage engine."""

from __future__ import annotations

from poulpe.settings import Settings
from poulpe.store.base import Store


def open_store(settings: Settings) -> Store:
    """The backend the flags ask for; imported lazily so SQLite users need no Redis client."""
    from poulpe.store.sqlite import SqliteStore

    return SqliteStore(settings.data)

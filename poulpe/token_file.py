"""The tokens in force at run time: `--tokens FILE` read at start, reloaded on SIGHUP and when the file changes.

A bad new file is refused with an error in the log and the tokens in force stay (as the cron file). A reload
replaces the table at once: a removed token gets 401 on its next request, and on its open WebSocket's next message.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from poulpe.hangup import off_hangup, on_hangup
from poulpe.tokens import Principal, TokensError, TokenTable, admin_token, read

log = logging.getLogger(__name__)


class Tokens:
    """`table` is what requests are checked against; None: no token at all, every route is open."""

    def __init__(self, path: Path | None, admin: str | None) -> None:
        self.path = path
        self.admin = admin
        self.table: TokenTable | None = None
        if path is not None:
            self.table = read(path, admin)  # TokensError: poulpe does not start
        elif admin:
            self.table = TokenTable([admin_token(admin)])
        # what the routes keep per token in force, by digest (auth.py: the manager as that token sees it); a reload
        # empties it with the table
        self.views: dict[str, Any] = {}
        self._reload = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def find(self, given: bytes) -> Principal | None:
        return self.table.find(given) if self.table is not None else None

    def still(self, principal: Principal) -> bool:
        return self.table is not None and self.table.still(principal)

    def reload(self) -> bool:
        """Read the file again; False (and the old tokens kept) when it is bad."""
        assert self.path is not None
        try:
            table = read(self.path, self.admin)
        except TokensError as exc:
            log.error("tokens: new file refused, the tokens in force stay: %s", exc)
            return False
        self.table = table
        self.views = {}
        log.info("tokens: %d tokens from %s", len(table), self.path)
        return True

    def start(self) -> None:
        if self.path is None:
            return
        on_hangup(self._reload.set)
        self._tasks = [
            asyncio.create_task(self._reload_forever(), name="poulpe-tokens"),
            asyncio.create_task(self._watch_file(), name="poulpe-tokens-watch"),
        ]

    async def stop(self) -> None:
        if self.path is not None:
            off_hangup(self._reload.set)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _reload_forever(self) -> None:
        while True:
            await self._reload.wait()
            self._reload.clear()
            self.reload()

    async def _watch_file(self) -> None:
        """Editors often replace the file: watch its directory."""
        import watchfiles

        assert self.path is not None
        target = await asyncio.to_thread(self.path.resolve)
        async for changes in watchfiles.awatch(target.parent, debounce=200, recursive=False):
            if any(Path(changed).name == target.name for _, changed in changes):
                self._reload.set()

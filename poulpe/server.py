"""uvicorn's Server, taught to drain poulpe first.

uvicorn owns SIGTERM and, on it, waits for open connections: a 300 s long-poll would hold the shutdown. So on the
way out poulpe drains before uvicorn closes anything: intake answers 503, long-polls answer with the current
state, running attempts get --grace seconds, and what is left stays stored for the next start.
"""

from __future__ import annotations

import socket

import uvicorn
from starlette.applications import Starlette

from poulpe.manager import JobManager


class PoulpeServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: Starlette, grace: float) -> None:
        super().__init__(config)
        self.poulpe_app = app
        self.grace = grace

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        manager: JobManager | None = getattr(self.poulpe_app.state, "manager", None)
        if manager is not None:
            await manager.stop(self.grace)
        await super().shutdown(sockets)

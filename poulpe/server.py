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
        # uvicorn re-raises the signal it caught once it has stopped, so the process would end "killed by SIGTERM"
        # (143 under Docker). A finished drain is a clean stop: exit 0, as service managers expect.
        captured = getattr(self, "_captured_signals", None)
        if isinstance(captured, list):
            captured.clear()

"""uvicorn's Server, with poulpe's drain before uvicorn closes anything.

uvicorn waits for open connections on its way out: a 300 s long-poll would hold the shutdown. So the Service
(service.py) drains first, listeners still open: new jobs get 503, long-polls answer with the current state, running
attempts get --grace seconds. Then uvicorn closes connections and the lifespan stops the Service (runners, store).
"""

from __future__ import annotations

import signal
import socket
from types import FrameType

import uvicorn

from poulpe.app import create_app
from poulpe.http_protocol import connection_options
from poulpe.service import Service
from poulpe.settings import Settings


class PoulpeServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, service: Service) -> None:
        super().__init__(config)
        self.service = service

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """SIGTERM or SIGINT: only set flags, as uvicorn's own handler does; the loop does the work. Unlike uvicorn's,
        it does not raise the signal again once the server stopped, which would end the process "killed by SIGTERM"
        (143 under Docker): a finished drain is a clean stop, exit 0, as service managers expect."""
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True  # a second Ctrl+C: stop waiting for connections
        else:
            self.should_exit = True

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await self.service.drain()
        await super().shutdown(sockets)


def build_server(settings: Settings) -> PoulpeServer:
    """poulpe's app under uvicorn, configured as the command runs it (the tests' in-process server uses it too)."""
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop=settings.loop,
        lifespan="on",
        access_log=settings.access_log,
        log_config=None,
        server_header=False,
        proxy_headers=False,  # poulpe binds where it is told; a proxy's X-Forwarded-For changes nothing here
        timeout_graceful_shutdown=5,
        ws_max_size=settings.max_body,
        **connection_options(settings.workers),  # httptools, with bounded connections and request heads
    )
    return PoulpeServer(config, app.state.service)

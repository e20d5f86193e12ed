"""uvicorn's Server, with poulpe's drain before uvicorn closes anything.

uvicorn waits for open connections on its way out: a 300 s long-poll would hold the shutdown. So the Service
(service.py) drains first, listeners still open: new jobs get 503, long-polls answer with the current state, running
attempts get --grace seconds. Then uvicorn closes connections and the lifespan stops the Service (runners, store).

The `poulpe` command also sets the garbage collector for a server (`tune_gc`): CPython's default runs a young
collection every 700 net allocations, so under load it runs in the middle of requests. The objects of the requests
still in flight (64 connections, or a batch of 1,000 jobs being validated) are seen by every young collection,
survive into the older generations, die there, and their count triggers full collections of the whole heap. A young
generation of YOUNG_GC objects lets them die first; what start-up built (modules, the app, the recovered schedule) is
frozen out of every collection once poulpe serves. Measured on POST /task_in_queue: about a sixth of the event
loop's CPU went to the collector with one job per request, a third with batches of 1,000 (bench/notes.md, "Third
pass: intake").
"""

from __future__ import annotations

import gc
import signal
import socket
from types import FrameType

import uvicorn

from poulpe.app import create_app
from poulpe.http_protocol import connection_options
from poulpe.service import Service
from poulpe.settings import Settings

YOUNG_GC = 50_000  # net allocations between young collections (CPython's default: 700); the older thresholds stay


class PoulpeServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, service: Service, *, tune_gc: bool = False) -> None:
        super().__init__(config)
        self.service = service
        self.tune_gc = tune_gc
        if tune_gc:  # from the start: the recovery of a large schedule allocates in bulk too
            _, older, oldest = gc.get_threshold()
            gc.set_threshold(YOUNG_GC, older, oldest)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.tune_gc and self.started:
            gc.collect()
            gc.freeze()  # what start-up built lives as long as the process: no collection walks it again

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


def build_server(settings: Settings, *, tune_gc: bool = False) -> PoulpeServer:
    """poulpe's app under uvicorn, configured as the command runs it (the tests' in-process server uses it too).
    `tune_gc`: the collector set for a server process (the module's docstring), which the command does."""
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
    return PoulpeServer(config, app.state.service, tune_gc=tune_gc)

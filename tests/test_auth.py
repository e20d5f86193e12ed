"""A wrong or missing token gets the same answer over HTTP and at a WebSocket handshake: 401 and one JSON body."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn
import websockets
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from poulpe.auth import TokenAuth
from poulpe.metrics import ErrorCounter, Metrics
from poulpe.token_file import Tokens
from tests.poulpe_process import free_port

TOKEN = "s3cret-token"
REFUSED = {"result": "Fail", "error": "missing or wrong bearer token", "field": None}


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text(await websocket.receive_text())


async def hello(_: object) -> PlainTextResponse:
    return PlainTextResponse("hello")


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def base(metrics: Metrics) -> AsyncIterator[str]:
    """The token check in front of an app, on uvicorn's WebSocket implementation as poulpe serves it ("auto": the
    websockets sans-I/O one, which has the denial-response extension)."""
    routes = [Route("/hello", hello), WebSocketRoute("/ws", echo)]
    app = ErrorCounter(TokenAuth(Starlette(routes=routes), Tokens(None, TOKEN)), metrics)  # as poulpe's app stacks them
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, ws="auto", log_config=None, lifespan="off")
    server = _Server(config)
    serving = asyncio.create_task(server.serve())
    await server.ready.wait()
    yield f"127.0.0.1:{port}"
    server.should_exit = True
    await serving


@pytest.mark.parametrize("query", ["", "?token=wrong"])
async def test_a_refused_websocket_gets_the_http_answer(base: str, metrics: Metrics, query: str) -> None:
    async with httpx.AsyncClient() as client:
        http = await client.get(f"http://{base}/hello{query}")
    assert http.status_code == 401 and http.json() == REFUSED
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        async with websockets.connect(f"ws://{base}/ws{query}"):
            pass
    response = refused.value.response
    assert response.status_code == 401
    assert json.loads(response.body or b"") == REFUSED
    assert response.headers["WWW-Authenticate"] == http.headers["WWW-Authenticate"] == "Bearer"
    assert response.headers["Content-Type"] == http.headers["Content-Type"]
    assert metrics.registry.get_sample_value("poulpe_intake_errors_total", {"status": "401"}) == 2  # both counted
    async with websockets.connect(f"ws://{base}/ws?token={TOKEN}") as ws:  # the right token opens it
        await ws.send("hi")
        assert await ws.recv() == "hi"

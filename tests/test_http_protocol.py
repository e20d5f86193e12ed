"""The connection's answers as the client's socket receives them: each answer whole in one write (one `send`), in
order, and an answer given in parts part by part, as the route gives them."""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.server import ServerState

from poulpe import http_protocol


class Socket:
    """A transport that records each write: one write is one `send` on a real socket."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 5555)}.get(name, default)

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def can_write_eof(self) -> bool:
        return False


async def answer(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    body = scope["path"].encode()
    await send({"type": "http.response.start", "status": 202, "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


async def connected(app: ASGIApp = answer) -> tuple[http_protocol.BoundedHttpProtocol, Socket]:
    config = uvicorn.Config(app, http=http_protocol.bind(http_protocol.Limits(64)), log_config=None)
    config.load()
    protocol = config.http_protocol_class(config=config, server_state=ServerState(), app_state={})  # type: ignore[call-arg]
    assert isinstance(protocol, http_protocol.BoundedHttpProtocol)
    sock = Socket()
    protocol.connection_made(sock)  # type: ignore[arg-type]
    return protocol, sock


async def settled(sock: Socket, writes: int) -> None:
    """Wait until the socket got `writes` writes, then a moment more: no other write follows."""
    for _ in range(500):
        if len(sock.writes) >= writes:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    assert len(sock.writes) == writes, sock.writes


def post(path: str) -> bytes:
    return f"POST {path} HTTP/1.1\r\nHost: poulpe\r\nContent-Length: 2\r\n\r\n{{}}".encode()


async def test_an_answer_leaves_in_one_write_head_and_body_together() -> None:
    protocol, sock = await connected()
    protocol.data_received(post("/one"))
    await settled(sock, 1)
    [whole] = sock.writes
    assert whole.startswith(b"HTTP/1.1 202 Accepted\r\n") and whole.endswith(b"\r\n\r\n/one")


async def test_pipelined_requests_are_answered_in_order_each_in_one_write() -> None:
    protocol, sock = await connected()
    protocol.data_received(post("/first") + post("/second") + post("/third"))
    await settled(sock, 3)
    assert [w.rpartition(b"\r\n\r\n")[2] for w in sock.writes] == [b"/first", b"/second", b"/third"]


async def test_an_answer_in_parts_leaves_part_by_part_while_the_route_still_works() -> None:
    release = asyncio.Event()

    async def parts(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"10")]})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        await release.wait()
        await send({"type": "http.response.body", "body": b"-last"})

    protocol, sock = await connected(parts)
    protocol.data_received(post("/parts"))
    await settled(sock, 1)
    assert sock.writes[0].endswith(b"\r\n\r\nfirst")  # head and first part, without waiting for the rest
    release.set()
    await settled(sock, 2)
    assert sock.writes[1] == b"-last"

"""kingtask's broker protocol on `--kingtask_addr` (SPEC 7), for the Go `BrokerClient` of kingtask's task package.

A message is one type byte, then (for types 1 and 2) one JSON object. kingtask's client writes each message in one
piece with no length and no delimiter, so an object ends where its braces close. Each request gets one JSON object
back, with nothing after it:
  1 + TaskRequest `{"uuid", "bin_name", "args", "start_time", "time_interval", "index"}` → `{"status": 0,
    "message": ""}`, or `{"status": 1, "message": "<why>"}` when the task is refused;
  2 + `{"key": "r_<uuid>"}` → `{"is_result_exist", "is_success", "message"}` (an unknown uuid: not existing yet);
  3 → poulpe closes the connection.
Tasks are the same EXEC jobs as `POST /api/v1/task/script` makes (poulpe/compat/kingtask.py).

Hostile input harms only its own connection: a type byte kingtask never sent, bytes that are not a JSON object, a
frame above MAX_FRAME bytes, a frame not complete within `frame_s` or a silence longer than `idle_s` between messages
close that connection; at most MAX_CONNECTIONS are served at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import msgspec

from poulpe.compat import kingtask
from poulpe.errors import PoulpeError
from poulpe.manager import JobManager
from poulpe.validate import Limits

log = logging.getLogger(__name__)
REQUEST_TASK, GET_RESULT, CLOSE = 1, 2, 3
MAX_FRAME = 64 * 1024  # kingtask read a request into 1 KiB; 64 KiB leaves room for long argument lists
READ_CHUNK = 4096  # a connection holds at most MAX_FRAME + READ_CHUNK bytes
REPLY_MAX = 512  # the Go client reads each reply with a single 512-byte read: a longer one would not decode
IDLE_S = 300.0  # between messages (the seed's client sleeps between Delay and GetResult)
FRAME_S = 10.0  # from a type byte to the end of its JSON object
MAX_CONNECTIONS = 1000
_NOT_YET = {"is_result_exist": 0, "is_success": 0, "message": ""}


class _Hostile(Exception):
    """The peer sent what no kingtask client sends: its connection is closed."""


class KingtaskWire:
    """The listener: started and stopped with poulpe (app.py), bound to the one address it is given."""

    def __init__(
        self,
        manager: JobManager,
        limits: Limits,
        host: str,
        port: int,
        *,
        idle_s: float = IDLE_S,
        frame_s: float = FRAME_S,
    ) -> None:
        self.manager = manager
        self.limits = limits
        self.host, self.port = host, port
        self.idle_s, self.frame_s = idle_s, frame_s
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> tuple[str, int]:
        """Where it listens (the port chosen by the system when given 0)."""
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    async def start(self) -> None:
        try:
            self._server = await asyncio.start_server(self._accept, self.host, self.port, limit=MAX_FRAME)
        except OSError as exc:  # poulpe does not start: the operator reads why in one line
            log.error("--kingtask_addr %s:%d cannot be listened on: %s", self.host, self.port, exc.strerror or exc)
            raise
        log.info("kingtask broker protocol listening on %s:%d", *self.address)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._connections) >= MAX_CONNECTIONS:
            log.warning("kingtask connection refused: %d connections open already", len(self._connections))
            writer.close()
            return
        self._connections.add(task)
        try:
            await self._serve(_Frames(reader), writer)
        except _Hostile as exc:
            log.info("kingtask connection from %s closed: %s", _peer(writer), exc)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:  # stop(): the connection ends with poulpe (asyncio would log each one)
            pass
        except Exception:  # a bug: this connection ends, the listener and the others go on
            log.exception("kingtask connection from %s failed", _peer(writer))
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, frames: _Frames, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                async with asyncio.timeout(self.idle_s):
                    kind = await frames.byte()
            except TimeoutError:
                raise _Hostile(f"nothing received for {self.idle_s:g}s") from None
            if kind is None or kind == CLOSE:
                return
            if kind not in (REQUEST_TASK, GET_RESULT):
                raise _Hostile(f"message type {kind} is not one kingtask knows")
            try:
                async with asyncio.timeout(self.frame_s):
                    frame = await frames.json_object()
            except TimeoutError:
                raise _Hostile(f"a message was not complete within {self.frame_s:g}s") from None
            try:
                fields = msgspec.json.decode(frame)
            except (msgspec.DecodeError, RecursionError):
                writer.write(_fit({"status": 1, "message": "the message is not valid JSON"}))
                raise _Hostile("a message was not valid JSON") from None
            if not isinstance(fields, dict):  # pragma: no cover (the framing only lets objects through)
                raise _Hostile("a message was not a JSON object")
            reply = await (self._request(fields) if kind == REQUEST_TASK else self._result(fields))
            writer.write(_fit(reply))
            await writer.drain()

    async def _request(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Type 1: submit the task as `POST /api/v1/task/script` would."""
        try:
            job = await kingtask.submit(self.manager, self.limits, kingtask.script_job(fields))
        except kingtask.KingtaskError as exc:
            return {"status": 1, "message": str(exc)}
        except PoulpeError as exc:
            return {"status": 1, "message": kingtask.kingtask_message(exc, kingtask.SCRIPT_NAMES)}
        log.info("kingtask task %s accepted on the broker protocol", job.id)
        return {"status": 0, "message": ""}

    async def _result(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Type 2: the result of `r_<uuid>`; kingtask answered "does not exist" for a key it did not hold."""
        key = fields.get("key")
        if not isinstance(key, str) or not key.startswith("r_") or not kingtask.is_task_id(key[2:]):
            return _NOT_YET
        try:
            job = await self.manager.get(key[2:])
        except PoulpeError as exc:
            return {"status": 1, "message": exc.message}
        return _NOT_YET if job is None else kingtask.reply_of(job)


class _Frames:
    """A connection's bytes, cut into type bytes and JSON objects without reading past the one asked for."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader
        self.buffer = bytearray()

    async def _more(self) -> None:
        chunk = await self.reader.read(READ_CHUNK)
        if not chunk:
            raise asyncio.IncompleteReadError(bytes(self.buffer), None)
        self.buffer += chunk

    async def byte(self) -> int | None:
        """The next byte, or None when the peer closed the connection between messages."""
        if not self.buffer:
            try:
                await self._more()
            except asyncio.IncompleteReadError:
                return None
        value = self.buffer[0]
        del self.buffer[0]
        return value

    async def json_object(self) -> bytes:
        """The JSON object that starts here (whitespace before it is skipped)."""
        scan = _ObjectEnd()
        while True:
            end = scan.feed(self.buffer)
            if end > MAX_FRAME or (end < 0 and len(self.buffer) > MAX_FRAME):
                raise _Hostile(f"a message is larger than {MAX_FRAME} bytes")
            if end >= 0:
                frame = bytes(self.buffer[:end])
                del self.buffer[:end]
                return frame
            await self._more()


class _ObjectEnd:
    """Finds where a JSON object ends in bytes that arrive in pieces: where its outer brace closes, outside strings.
    JSON's structural characters are ASCII, so UTF-8 text (every byte of a multibyte character >= 0x80) is never
    mistaken for one."""

    def __init__(self) -> None:
        self.depth = 0
        self.in_string = False
        self.escaped = False
        self.at = 0

    def feed(self, data: bytearray) -> int:
        """The index just past the object's end, or -1 when more bytes are needed."""
        for i in range(self.at, len(data)):
            c = data[i]
            if self.in_string:
                if self.escaped:
                    self.escaped = False
                elif c == 0x5C:  # backslash
                    self.escaped = True
                elif c == 0x22:  # quote
                    self.in_string = False
            elif self.depth == 0:
                if c == 0x7B:  # the opening brace
                    self.depth = 1
                elif c not in b" \t\r\n":
                    raise _Hostile("a message is not a JSON object")
            elif c == 0x22:
                self.in_string = True
            elif c in b"{[":
                self.depth += 1
            elif c in b"}]":
                self.depth -= 1
                if self.depth == 0:
                    return i + 1
        self.at = len(data)
        return -1


def _fit(reply: dict[str, Any]) -> bytes:
    """The reply as JSON of at most REPLY_MAX bytes: a long message is cut (the whole result is on the HTTP routes)."""
    encoded = msgspec.json.encode(reply)
    message = str(reply.get("message", ""))
    while len(encoded) > REPLY_MAX and message:
        message = message[: max(0, len(message) - (len(encoded) - REPLY_MAX))]
        encoded = msgspec.json.encode({**reply, "message": message})
    return encoded


def _peer(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else "?"

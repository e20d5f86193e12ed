"""uvicorn's httptools protocol, bounded: connections, request heads, and the bytes a request line may carry.

- A request line with raw UTF-8 (curl and Go send `?name=工兵` unencoded) has its bytes >= 0x80 percent-encoded
  before the parser sees them, so the route reads the same text as from a percent-encoded request.
- A request head must arrive whole within HEAD_TIMEOUT seconds and stay under HEAD_LIMIT bytes (431 otherwise,
  answered as soon as the limit is passed: httptools grows a header value without bound, in quadratic time).
- Open connections stay under a cap below the open-file limit. At the cap a newcomer closes the connection that
  has been idle longest (no request in progress: long-polls and WebSockets are never idle), if it has been idle
  IDLE_GRACE seconds at least; only when none has does the newcomer get a 503. The grace keeps a burst of
  newcomers from closing each other: asyncio accepts a burst of sockets before it reads any, so a connection whose
  request is already on its way looks idle for a moment.
- Errors written before the app runs (400, 408, 431, 503) are JSON in poulpe's error shape.
- An answer's head and body leave in one write (`Corked`): uvicorn writes each ASGI message to the socket as it
  comes, so a small JSON answer cost two `send` system calls and two segments for the client to read.
"""

from __future__ import annotations

import asyncio
import logging
import re
import resource
import weakref
from collections.abc import Iterable
from typing import Any, ClassVar, cast

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from poulpe.responses import encode

logger = logging.getLogger(__name__)

HEAD_LIMIT = 64 * 1024  # request line and headers, bytes
HEAD_TIMEOUT = 5.0  # seconds from the connection (or the next request's first byte) to the end of its head
IDLE_GRACE = 0.25  # seconds a connection must have been idle before a newcomer at the cap may close it
LINGER = 2.0  # seconds a refused client gets to read its answer while poulpe discards what it still sends
MAX_CONNECTIONS = 65_536  # a ceiling even when the open-file limit is far higher
_HIGH_BYTES = re.compile(rb"[\x80-\xff]")


def _percent(match: re.Match[bytes]) -> bytes:
    return b"%%%02X" % match[0][0]


def raise_open_files() -> int:
    """Raise the soft open-file limit to the hard one; return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 1 << 20 if hard == resource.RLIM_INFINITY else hard  # "unlimited" is refused above fs.nr_open
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            logger.warning("could not raise the open-file limit from %d to %d", soft, wanted)
    return 1 << 20 if soft == resource.RLIM_INFINITY else soft


class Limits:
    """What the connections of one server share: the cap, and the idle ones (since when: the loop's time), longest
    idle first."""

    def __init__(self, cap: int, backlog: int = 2048) -> None:
        self.cap = cap
        self.backlog = backlog
        self.idle: dict[BoundedHttpProtocol, float] = {}

    @classmethod
    def for_open_files(cls, open_files: int, workers: int) -> Limits:
        """asyncio accepts up to `backlog` sockets in one go, before any protocol can close one: the cap leaves
        room for two such bursts, the store, and each worker's sockets, pipes and files."""
        backlog = max(16, min(2048, open_files // 8))
        return cls(max(64, min(MAX_CONNECTIONS, open_files - 2 * backlog - 4 * workers - 64)), backlog)


def connection_options(workers: int) -> dict[str, Any]:
    """uvicorn.Config options: the bounded protocol, and a backlog that fits in the open-file room it leaves."""
    open_files = raise_open_files()
    limits = Limits.for_open_files(open_files, workers)
    logger.info("at most %d connections (open files %d, listen backlog %d)", limits.cap, open_files, limits.backlog)
    return {"http": bind(limits), "backlog": limits.backlog}


def bind(limits: Limits) -> type[BoundedHttpProtocol]:
    """A protocol class whose connections share `limits` (uvicorn builds protocols from a class)."""

    class Bound(BoundedHttpProtocol):
        pass

    Bound.limits = limits
    return Bound


def answer(status: int, error: str, headers: Iterable[tuple[bytes, bytes]] = ()) -> bytes:
    """A whole HTTP answer in poulpe's JSON error shape, for errors written before the app runs."""
    body = encode({"result": "Fail", "error": error, "field": None})
    head = [STATUS_LINE[status]]
    for name, value in headers:
        head += [name, b": ", value, b"\r\n"]
    head.append(b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body))
    return b"".join(head) + body


class Flushes:
    """The corks written to during one loop iteration, flushed together at its end: one callback per iteration for
    every connection, instead of one per answer (a `call_soon` and its run cost about 1 µs; most answers are complete,
    and flushed, long before it runs)."""

    __slots__ = ("corks",)

    def __init__(self) -> None:
        self.corks: list[Corked] = []

    def add(self, cork: Corked) -> None:
        if not self.corks:
            asyncio.get_running_loop().call_soon(self.flush)  # not held here: _FLUSHES must not keep its key alive
        self.corks.append(cork)

    def flush(self) -> None:
        corks, self.corks = self.corks, []
        for cork in corks:
            cork.flush()


class Corked:
    """What a request's cycle writes, held until its answer is complete (or the loop's iteration ends, for an answer
    given in parts), then written to the socket at once. It is all the cycle uses of the transport: write, close,
    is_closing."""

    __slots__ = ("flushes", "pending", "transport")

    def __init__(self, transport: asyncio.Transport, flushes: Flushes) -> None:
        self.transport = transport
        self.flushes = flushes
        self.pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self.pending:
            self.flushes.add(self)  # an answer in parts: each part no later than the end of this iteration
        self.pending.append(data)

    def flush(self) -> None:
        if self.pending:
            data = b"".join(self.pending)
            self.pending.clear()
            if not self.transport.is_closing():
                self.transport.write(data)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def is_closing(self) -> bool:
        return self.transport.is_closing()


_FLUSHES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Flushes] = weakref.WeakKeyDictionary()  # one a loop


class BoundedHttpProtocol(HttpToolsProtocol):
    limits: ClassVar[Limits] = Limits(1 << 20)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        flushes = _FLUSHES.get(self.loop)
        if flushes is None:
            flushes = _FLUSHES[self.loop] = Flushes()
        self._cork = Corked(transport, flushes)  # the cycles' writes, in order (one cycle answers at a time)
        self._line_open = True  # the next bytes start a request line
        self._line_whole_feed = True  # this feed began at a request line
        self._begun_in_feed = False
        self._in_head = True
        self._head_bytes = 0
        self._refused = False
        # one timer per connection, not per request: a request only moves the deadline, the timer re-arms itself
        self._head_started = True
        self._head_deadline = self.loop.time() + HEAD_TIMEOUT
        self._head_timer: asyncio.TimerHandle | None = self.loop.call_at(self._head_deadline, self._head_too_slow)
        self.limits.idle[self] = self.loop.time()
        if len(self.connections) > self.limits.cap:
            self._make_room()

    def connection_lost(self, exc: Exception | None) -> None:
        self.limits.idle.pop(self, None)
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _make_room(self) -> None:
        idle_since = self.loop.time() - IDLE_GRACE
        for victim, since in self.limits.idle.items():
            if since > idle_since:
                break  # idle only a moment, as every one after it: perhaps a request not read yet
            if victim is not self and not victim.transport.is_closing():
                del self.limits.idle[victim]
                logger.warning("at the connection limit (%d): closing the connections idle longest", self.limits.cap)
                victim._cancel_head_timer()
                victim.transport.close()
                return
        logger.warning("at the connection limit (%d) with every connection busy: answering 503", self.limits.cap)
        # the answer lingers (so the client reads it) only while the open-file room above the cap lasts
        linger = LINGER if len(self.connections) < self.limits.cap + self.limits.backlog else 0
        self._refuse(
            503, f"poulpe is at its limit of {self.limits.cap} connections, all busy: retry shortly", linger=linger
        )

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # lingering after a refusal: what the client still sends is dropped
        if self._line_open:
            data = self._encode_request_line(data)
        if self._in_head:
            self._head_bytes += len(data)
        self._line_whole_feed, self._begun_in_feed = self._line_open, False
        super().data_received(data)
        if self._in_head and self._head_bytes > HEAD_LIMIT and not self._refused:
            self._refuse(431, f"the request head is larger than {HEAD_LIMIT} bytes")

    def _encode_request_line(self, data: bytes) -> bytes:
        """Percent-encode the bytes >= 0x80 of the request line (the target is the only place they can be)."""
        start = len(data) - len(data.lstrip(b"\r\n"))  # empty lines may precede a request
        end = data.find(b"\n", start)
        line = data[start:] if end < 0 else data[start:end]
        if line:
            self._line_open = end < 0
        if line.isascii():
            return data
        return data[:start] + _HIGH_BYTES.sub(_percent, line) + (data[end:] if end >= 0 else b"")

    def on_message_begin(self) -> None:
        if self._begun_in_feed or not self._line_whole_feed:
            self._line_open = False  # a pipelined request began inside a feed: its line went to the parser as is
        self._begun_in_feed = True
        self._in_head = True
        self._head_started = True
        self._head_deadline = self.loop.time() + HEAD_TIMEOUT
        if self._head_timer is None:
            self._head_timer = self.loop.call_at(self._head_deadline, self._head_too_slow)
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        received, self._head_bytes, self._in_head, self._head_started = self._head_bytes, 0, False, False
        self.limits.idle.pop(self, None)
        # the bytes received since the head began bound its size; when one feed brought a large head whole, measure it
        if received > HEAD_LIMIT and len(self.url) + sum(len(k) + len(v) + 4 for k, v in self.headers) > HEAD_LIMIT:
            self._refuse(431, f"the request head is larger than {HEAD_LIMIT} bytes")
            return
        super().on_headers_complete()
        if self.cycle is not None:
            self.cycle.transport = cast(asyncio.Transport, self._cork)

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._line_open = self._in_head = True  # the next bytes are the next request's head
        self._head_bytes = 0
        if not self._refused:
            super().on_message_complete()

    def on_response_complete(self) -> None:
        self._cork.flush()  # the whole answer, before the next one starts or anything else is written
        super().on_response_complete()
        if self.timeout_keep_alive_task is not None:  # kept alive and nothing pipelined: idle again
            self.limits.idle.pop(self, None)  # (at the end: the order is the order of becoming idle)
            self.limits.idle[self] = self.loop.time()

    def handle_websocket_upgrade(self) -> None:
        self._cork.flush()
        self.limits.idle.pop(self, None)
        self._cancel_head_timer()
        super().handle_websocket_upgrade()

    def send_400_response(self, msg: str) -> None:
        if not self._refused:
            self._refuse(400, "the request is not valid HTTP/1.1", linger=0)

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if not self._head_started or self.transport.is_closing() or self._refused:
            return  # no head under way: the next request's first byte arms the timer again
        if self.loop.time() < self._head_deadline:
            self._head_timer = self.loop.call_at(self._head_deadline, self._head_too_slow)
            return
        if self._head_bytes or not self._line_open:
            logger.info("closed connections whose request head took longer than %g s", HEAD_TIMEOUT)
            self._refuse(408, f"the request head did not arrive within {HEAD_TIMEOUT:g} s", linger=0)
        else:
            self.transport.close()

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _refuse(self, status: int, error: str, *, linger: float = LINGER) -> None:
        """Answer `status` and close. With `linger`, keep reading (and dropping) for a moment first: closing with
        unread bytes makes the kernel reset the connection, and the client may then lose the answer."""
        if status == 431:
            logger.warning("refused a request head over %d bytes (431)", HEAD_LIMIT)
        self._refused = True
        self._cork.flush()  # an answer written before this one leaves first
        self._cancel_head_timer()
        self.limits.idle.pop(self, None)
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False  # a pipelined head went wrong mid-response: finish that response, then close
            return
        self.transport.write(answer(status, error, self.server_state.default_headers))
        if linger and self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(linger, self.transport.close)
        else:
            self.transport.close()

"""A TCP proxy in front of a real redis-server that loses a reply, or refuses connections, when a test says so.

Losing a reply is what a Redis that dies between applying a write and answering it does to poulpe: the write was
applied, the answer never comes. It runs in threads of its own, so sync and async tests can both use it.

    proxy = RedisProxy(redis_server.port).start()
    proxy.lose_reply(to=b"<sha of a script>", then_refuse=True)   # the next call of that script: applied, unanswered
    ...
    proxy.accept()                                                 # Redis is "back"
"""

from __future__ import annotations

import contextlib
import socket
import threading


class RedisProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.lost = 0  # replies lost so far
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._marker: bytes | None = None
        self._then_refuse = False
        self._victims: set[socket.socket] = set()  # upstream sockets whose next reply is lost

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisProxy:
        self.accept()
        return self

    def accept(self) -> None:
        """Listen (again, on the same port): Redis is reachable."""
        if self._listener is not None:
            return
        listener = socket.create_server(("127.0.0.1", self.port))
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept_forever, args=(listener,), daemon=True).start()

    def refuse(self) -> None:
        """Close every connection and stop listening: connecting now fails at once, as with a dead Redis."""
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._open = self._open, set()
        if listener is not None:
            _close(listener)  # shutdown first: it wakes the thread blocked in accept()
        for sock in sockets:
            _close(sock)

    def lose_reply(self, to: bytes, *, then_refuse: bool = False) -> None:
        """The next request holding `to` reaches Redis; its reply does not come back (the connection closes)."""
        with self._lock:
            self._marker, self._then_refuse = to, then_refuse

    def stop(self) -> None:
        self.refuse()

    def _accept_forever(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # refused or stopped
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._open |= {client, upstream}
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, request: bool) -> None:
        upstream = sink if request else source
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            if not data:
                _close(sink)
                return
            with self._lock:
                if request and self._marker is not None and self._marker in data:
                    self._marker = None
                    self._victims.add(upstream)
                lose = not request and upstream in self._victims
                if lose:
                    self._victims.discard(upstream)
                    self.lost += 1
            if lose:
                if self._then_refuse:
                    self.refuse()
                _close(source)
                _close(sink)
                return
            try:
                sink.sendall(data)
            except OSError:
                _close(source)
                return


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()

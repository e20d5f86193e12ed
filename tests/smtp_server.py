"""A real SMTP server for poulpe's tests: aiosmtpd on a free loopback port, in its own thread.

It records every mail it accepts and can be told to refuse (a 4xx or 5xx answer to RCPT or DATA).

    cert = make_certificate(tmp_path)
    with SmtpServer(auth=("robot", "s3cret"), starttls=cert) as smtp:
        ...  # send to smtp.host:smtp.port, trusting cert.client_context()
        smtp.replies(rcpt="450 4.2.1 try later")
        assert smtp.received[0].message["Subject"] == "hello"
"""

from __future__ import annotations

import asyncio
import dataclasses
import email
import email.policy
import socket
import ssl
import subprocess
import threading
from collections.abc import Awaitable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

ACCEPTED = "250 2.0.0 OK: queued as poulpe-test"


@dataclasses.dataclass(frozen=True)
class Certificate:
    """A self-signed certificate for `localhost` and 127.0.0.1, made by `make_certificate`."""

    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts this certificate only (hostname checks stay on)."""
        return ssl.create_default_context(cafile=str(self.cert))


def make_certificate(directory: Path) -> Certificate:
    """Generate a fresh self-signed certificate with `openssl req -x509` (the venv has no `cryptography`)."""
    cert, key = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    command = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    command += ["-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost"]
    command += ["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"]
    subprocess.run(
        command,
        check=True,
        capture_output=True,
        timeout=30,
    )
    return Certificate(cert=cert, key=key)


@dataclasses.dataclass(frozen=True)
class Received:
    """One mail the server accepted: the envelope, the parsed message and how the client got there."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    raw: bytes
    tls: bool
    login: str | None


class SmtpServer:
    """aiosmtpd in a thread. Options are fixed at construction; replies can change between sends.

    `auth=(name, password)` advertises AUTH PLAIN/LOGIN; by default AUTH is offered only over TLS when TLS is on
    (aiosmtpd's `auth_require_tls`), and over plain text otherwise. `starttls` offers STARTTLS with that
    certificate (`require_starttls` refuses mail before it); `implicit_tls` speaks TLS from the first byte.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        *,
        auth: tuple[str, str] | None = None,
        auth_require_tls: bool | None = None,
        starttls: Certificate | None = None,
        require_starttls: bool = False,
        implicit_tls: Certificate | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self._rcpt_reply: str | None = None
        self._data_reply: str | None = None
        self._refuse: dict[str, str] = {}
        self._stall = 0.0
        self._auth = auth
        options: dict[str, Any] = {"server_hostname": "localhost", "ready_timeout": 10}
        if auth is not None:
            options["authenticator"] = self._authenticate
            # aiosmtpd only counts STARTTLS as TLS: with implicit TLS, AUTH must be allowed "without" it
            options["auth_require_tls"] = starttls is not None if auth_require_tls is None else auth_require_tls
        if starttls is not None:
            options["tls_context"] = starttls.server_context()
            options["require_starttls"] = require_starttls
        if implicit_tls is not None:
            options["ssl_context"] = implicit_tls.server_context()
        # proto IPPROTO_TCP, as asyncio's own create_server uses: asyncio sets TCP_NODELAY only on such sockets, and
        # without it aiosmtpd's line-by-line EHLO answer meets delayed ACKs (40 ms per connection)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.bind((self.host, 0))
        self._sock.listen(128)
        self.port: int = self._sock.getsockname()[1]
        self._controller = _BoundController(_Handler(self), self._sock, hostname=self.host, port=self.port, **options)

    # --- lifecycle -----------------------------------------------------------------------------------------
    def start(self) -> SmtpServer:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()
        self._sock.close()

    def __enter__(self) -> SmtpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what the tests read and set ---------------------------------------------------------------------
    @property
    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def replies(
        self,
        *,
        rcpt: str | None = None,
        data: str | None = None,
        refuse: dict[str, str] | None = None,
        stall: float = 0.0,
    ) -> None:
        """Answer every RCPT with `rcpt`, every DATA with `data`, the RCPT of an address in `refuse` with its
        reply (e.g. `{"nobody@example.com": "550 5.1.1 no such user"}`); None: accept. `stall`: wait this many
        seconds after the mail's data before answering, then refuse it with a 451 (nothing is recorded)."""
        with self._lock:
            self._rcpt_reply, self._data_reply, self._refuse = rcpt, data, dict(refuse or {})
            self._stall = stall

    def reset(self) -> None:
        self.replies()
        with self._lock:
            self._received.clear()

    # --- called in the server's thread -------------------------------------------------------------------
    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if self._auth is None or not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        given = (data.login.decode(errors="replace"), data.password.decode(errors="replace"))
        return AuthResult(success=given == self._auth, handled=False, auth_data=given[0])

    def _rcpt_answer(self, address: str) -> str | None:
        with self._lock:
            return self._refuse.get(address, self._rcpt_reply)

    def _stall_seconds(self) -> float:
        with self._lock:
            return self._stall

    def _data_answer(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self._lock:
            if self._data_reply is not None:
                return self._data_reply
            raw = envelope.original_content or b""
            # parsed with local line ends, as a mailbox stores it: get_content() gives "a\n", not "a\r\n"
            message = email.message_from_bytes(raw.replace(b"\r\n", b"\n"), policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            self._received.append(
                Received(
                    mail_from=envelope.mail_from or "",
                    rcpt_tos=list(envelope.rcpt_tos),
                    message=message,
                    raw=raw,
                    tls=server.transport is not None and server.transport.get_extra_info("ssl_object") is not None,
                    login=session.auth_data if isinstance(session.auth_data, str) else None,
                )
            )
            return ACCEPTED


class _Handler:
    """aiosmtpd's handler hooks, answering as the SmtpServer says."""

    def __init__(self, owner: SmtpServer) -> None:
        self.owner = owner

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        answer = self.owner._rcpt_answer(address)
        if answer is not None:
            return answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        stall = self.owner._stall_seconds()
        if stall:
            await asyncio.sleep(stall)
            return "451 4.4.2 answered too late"
        return self.owner._data_answer(server, session, envelope)


class _BoundController(Controller):
    """A Controller serving on a socket bound beforehand: port 0 without a window for another process to take it."""

    def __init__(self, handler: Any, sock: socket.socket, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._bound = sock

    def _create_server(self) -> Awaitable[Any]:
        return self.loop.create_server(self._factory_invoker, sock=self._bound, ssl=self.ssl_context)


def silent_server() -> socket.socket:
    """A listening socket that never accepts: connections complete (the kernel's backlog) and hear nothing."""
    return socket.create_server(("127.0.0.1", 0), backlog=8)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port

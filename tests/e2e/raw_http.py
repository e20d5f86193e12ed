"""Requests sent byte for byte as a given client writes them (curl, Go's net/http), where an HTTP library would
rewrite them (percent-encode a path, relabel a body); the answer read back just as plainly."""

from __future__ import annotations

import dataclasses
import json
import socket
from typing import Any


@dataclasses.dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def exchange(port: int, request: bytes, timeout: float = 30.0) -> Answer:
    """Send `request` as is on a fresh connection to 127.0.0.1:`port` and read one answer (Content-Length framed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"the connection closed before an answer: {data!r}"
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = sock.recv(65536)
            assert chunk, "the connection closed in the middle of the body"
            body += chunk
    return Answer(int(status_line.split()[1]), headers, body[:length])


def curl(port: int, method: str, target: str, body: bytes | None = None, *, cookie: str | None = None) -> bytes:
    """What `curl -X METHOD [--cookie C] [-d BODY] http://127.0.0.1:PORT<target>` (curl 8) writes: `-d` labels its
    body a form, whatever it holds, and the target goes out as typed (UTF-8 bytes stay raw)."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{port}", "User-Agent: curl/8.5.0", "Accept: */*"]
    if cookie is not None:
        lines.append(f"Cookie: {cookie}")
    if body is not None:
        lines += [f"Content-Length: {len(body)}", "Content-Type: application/x-www-form-urlencoded"]
    return "\r\n".join(lines).encode() + b"\r\n\r\n" + (body or b"")


def go_client(port: int, method: str, target: str, body: bytes | None = None, content_type: str | None = None) -> bytes:
    """What Go's net/http client writes for http.NewRequest(METHOD, url, body) and DefaultClient.Do."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{port}", "User-Agent: Go-http-client/1.1"]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    lines.append("Accept-Encoding: gzip")
    return "\r\n".join(lines).encode() + b"\r\n\r\n" + (body or b"")

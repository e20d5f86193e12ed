"""JSON answers encoded with msgspec (fast, and the same encoding everywhere)."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from poulpe.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

_encoder = msgspec.json.Encoder()


def encode(data: Any) -> bytes:
    return _encoder.encode(data)


def json_response(data: Any, status: int = 200) -> Response:
    return Response(_encoder.encode(data), status_code=status, media_type="application/json")


async def read_json_body(request: Request, cap: int) -> bytes:
    """The request body, refused early when it is not JSON (415) or larger than `cap` (413)."""
    _check_head(request.headers.get("content-type", ""), request.headers.get("content-length", ""), cap)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise PayloadTooLarge(f"the body is larger than {cap} bytes (--max_body)")
        chunks.append(chunk)
    return b"".join(chunks)


async def receive_json_body(scope: Scope, receive: Receive, cap: int) -> bytes:
    """`read_json_body` for a plain ASGI route (no Request object): the same checks and answers."""
    content_type = content_length = b""
    for name, value in scope["headers"]:  # the first of each, as Starlette's Headers.get gives
        if name == b"content-type" and not content_type:
            content_type = value or b" "
        elif name == b"content-length" and not content_length:
            content_length = value or b" "
    if content_type != b"application/json" or not content_length.isdigit() or int(content_length) > cap:
        _check_head(content_type.decode("latin-1"), content_length.decode("latin-1"), cap)  # the common case skips it
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > cap:
            raise PayloadTooLarge(f"the body is larger than {cap} bytes (--max_body)")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _check_head(content_type: str, content_length: str, cap: int) -> None:
    media = content_type.split(";")[0].strip().lower()
    if media != "application/json":
        raise UnsupportedMediaType("send the job as JSON with Content-Type: application/json", None)
    if content_length.isdigit() and int(content_length) > cap:
        raise PayloadTooLarge(f"the body is larger than {cap} bytes (--max_body)")


async def send_json(send: Send, data: Any, status: int) -> None:
    """`json_response(data, status)` sent from a plain ASGI route: the same head and body, no Response object."""
    body = _encoder.encode(data)
    headers = [(b"content-length", b"%d" % len(body)), (b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def int_param(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a whole number", name) from None


def float_param(request: Request, name: str, default: float, *, low: float, high: float) -> float:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a number of seconds", name) from None
    if not low <= value <= high:
        raise BadRequest(f"{name} must be between {low:g} and {high:g}", name)
    return value

"""JSON answers encoded with msgspec (fast, and the same encoding everywhere)."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from poulpe.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

_encoder = msgspec.json.Encoder()


def encode(data: Any) -> bytes:
    return _encoder.encode(data)


def json_response(data: Any, status: int = 200) -> Response:
    return Response(_encoder.encode(data), status_code=status, media_type="application/json")


async def read_json_body(request: Request, cap: int) -> bytes:
    """The request body, refused early when it is not JSON (415) or larger than `cap` (413)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        raise UnsupportedMediaType("send the job as JSON with Content-Type: application/json", None)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise PayloadTooLarge(f"the body is larger than {cap} bytes (--max_body)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise PayloadTooLarge(f"the body is larger than {cap} bytes (--max_body)")
        chunks.append(chunk)
    return b"".join(chunks)


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

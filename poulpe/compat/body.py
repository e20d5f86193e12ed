"""Request bodies as the old clients send them: a JSON object whatever its label, or an HTML form (`a=1&b=2`)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

import msgspec
from starlette.requests import Request

from poulpe.errors import BadRequest, PayloadTooLarge

_FORM = "application/x-www-form-urlencoded"
MAX_FIELDS = 100


async def read_fields(request: Request, cap: int) -> dict[str, Any]:
    """The body's fields (see `read_body`)."""
    fields, _ = await read_body(request, cap)
    return fields


async def read_body(request: Request, cap: int) -> tuple[dict[str, Any], bool]:
    """The body's fields, and whether they came as a form. A body that opens with `{` is JSON whatever its media
    type says: curl's `-d '{...}'` labels it a form, Go clients send it untyped or as text/html, and the Go servers
    read it as JSON all the same. Any other body labelled a form is a urlencoded form (every field a string).
    Raises BadRequest for anything else."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise PayloadTooLarge(f"the body is larger than {cap} bytes")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > cap:
            raise PayloadTooLarge(f"the body is larger than {cap} bytes")
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == _FORM and not body.lstrip().startswith(b"{"):
        return _form(body), True
    if not body.strip():
        return {}, False
    try:
        fields = msgspec.json.decode(body)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        raise BadRequest("the body is neither a JSON object nor a form") from None
    if not isinstance(fields, dict):
        raise BadRequest("the body must be a JSON object")
    if len(fields) < body.count(b":"):  # maybe a key given twice: parsers disagree on which value wins
        _refuse_repeated_keys(body)
    return fields, False


def _refuse_repeated_keys(body: bytes) -> None:
    def check(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise BadRequest(f"{key[:64]} is given twice", key[:64])
            seen.add(key)
        return {}

    try:
        json.loads(body, object_pairs_hook=check)
    except (ValueError, RecursionError):  # msgspec read it: only what json refuses on its own terms is left
        raise BadRequest("the body is not valid JSON") from None


def _form(body: bytes) -> dict[str, Any]:
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text), max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("the form body is malformed (expected name=value pairs joined by &, UTF-8)") from None
    fields: dict[str, Any] = {}
    for key, value in pairs:
        if key in fields:
            raise BadRequest(f"{key} is given twice", key)
        fields[key] = value
    return fields

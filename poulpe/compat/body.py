"""Request bodies as the old clients send them: a JSON object, or an HTML form (`a=1&b=2`)."""

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
    """The body's fields: a JSON object (any media type but a form, as Go clients often send JSON untyped), or a
    urlencoded form whose every field is a string. Raises BadRequest for anything else."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise PayloadTooLarge(f"the body is larger than {cap} bytes")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > cap:
            raise PayloadTooLarge(f"the body is larger than {cap} bytes")
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == _FORM:
        return _form(body)
    if not body.strip():
        return {}
    try:
        fields = msgspec.json.decode(body)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        raise BadRequest("the body is neither a JSON object nor a form") from None
    if not isinstance(fields, dict):
        raise BadRequest("the body must be a JSON object")
    if len(fields) < body.count(b":"):  # maybe a key given twice: parsers disagree on which value wins
        _refuse_repeated_keys(body)
    return fields


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

"""Keys (SPEC 10.1): what a key's limits are, and how a change to them is read and checked.

A key names a group of jobs that share limits: `parallelism` (attempts running at once), `rate` (attempt starts
per `period` seconds, a token bucket holding at most `rate` tokens) and `paused`. A key without limits of its own
gets the defaults of `--key_parallelism`, `--key_rate` and `--key_period`. Jobs without a key have no limits.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import msgspec

from poulpe.errors import BadRequest

KEY_PATTERN = r"^[A-Za-z0-9._:@/-]{1,128}$"  # as documented (ECMA regex)
KEY_WIRE = r"^[A-Za-z0-9._:@/-]{1,128}\Z"
KEY_RULE = "key must be 1 to 128 characters of A-Z a-z 0-9 . _ : @ / -"
_KEY_RE = re.compile(KEY_WIRE)
MAX_LIMIT = 1_000_000


class KeyLimits(msgspec.Struct, frozen=True, omit_defaults=True):
    """A key's own limits as stored. None: no limit of that kind (or, for a key's own record, the default)."""

    parallelism: int | None = None
    rate: float | None = None
    period: float = 1.0
    paused: bool = False

    @property
    def empty(self) -> bool:
        return self == KeyLimits()


Limit = Annotated[int, msgspec.Meta(ge=1, le=MAX_LIMIT)]
Rate = Annotated[float, msgspec.Meta(gt=0, le=MAX_LIMIT)]
Period = Annotated[float, msgspec.Meta(gt=0, le=86400)]
_UNSET: Any = msgspec.UNSET


class KeyUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """`PUT /keys/{key}`: partial, so a field left out keeps its value and `null` removes that limit."""

    parallelism: Limit | msgspec.UnsetType | None = _UNSET
    rate: Rate | msgspec.UnsetType | None = _UNSET
    period: Period | msgspec.UnsetType = _UNSET
    paused: bool | msgspec.UnsetType = _UNSET


_decoder = msgspec.json.Decoder(KeyUpdate)
_FIELD = re.compile(r"`\$\.([a-z_]+)`")
_UNKNOWN = re.compile(r"unknown field `([^`]+)`")


def check_key(key: str) -> str:
    if not _KEY_RE.match(key):
        raise BadRequest(KEY_RULE, "key")
    return key


def apply_update(body: bytes, current: KeyLimits) -> KeyLimits:
    """The key's limits after the change `body` asks for; 400 naming the field when a value is refused."""
    if not body.strip():
        raise BadRequest("the body must be a JSON object of parallelism, rate, period and paused", None)
    try:
        update = _decoder.decode(body)
    except msgspec.DecodeError as exc:
        message = str(exc)
        unknown = _UNKNOWN.search(message)
        if unknown:
            raise BadRequest(f"unknown field {unknown.group(1)!r}", unknown.group(1)) from None
        found = _FIELD.search(message)
        field = found.group(1) if found else None
        rules = {
            "parallelism": f"parallelism must be an integer from 1 to {MAX_LIMIT}, or null",
            "rate": f"rate must be a number above 0 and at most {MAX_LIMIT}, or null",
            "period": "period must be a number of seconds above 0 and at most 86400",
            "paused": "paused must be true or false",
        }
        raise BadRequest(rules.get(field or "", f"the body must be a JSON object: {message}"), field) from None
    changes = {name: value for name in KeyUpdate.__struct_fields__ if (value := getattr(update, name)) is not _UNSET}
    return msgspec.structs.replace(current, **changes)


def effective(own: KeyLimits | None, defaults: KeyLimits) -> KeyLimits:
    """A key's limits in force: each limit its own when set, the default otherwise (`null` reverts to the default;
    the pause is always the key's own)."""
    if own is None:
        return msgspec.structs.replace(defaults, paused=False)
    rate, period = (own.rate, own.period) if own.rate is not None else (defaults.rate, defaults.period)
    parallelism = own.parallelism if own.parallelism is not None else defaults.parallelism
    return KeyLimits(parallelism=parallelism, rate=rate, period=period, paused=own.paused)

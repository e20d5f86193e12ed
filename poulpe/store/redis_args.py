"""How the Redis store's scripts get their arguments: all of a call's arguments in one MessagePack array.

A `saves` call carries 14 arguments per job and an `add` of a batch 10 per job; redis-py packs each argument of a
command in Python, which cost a busy process more CPU per job than anything else it did with Redis. One argument
packed by msgspec costs a fraction of that, and the script unpacks it with Redis's own `cmsgpack` (every script of
SCRIPTS starts with `ARGS`). Each value goes as the text redis-py would have sent: scripts see the same strings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

# The first line of every script the store calls: its ARGV, unpacked. (Redis's cmsgpack reads str, not bin.)
ARGS = "local ARGV = cmsgpack.unpack(ARGV[1])\n"
_encode = msgspec.msgpack.Encoder().encode
_TEXT = frozenset({str})


def packed(base: str, args: Sequence[Any]) -> bytes:
    """The namespace and `args` as one MessagePack array of strings (ints and floats as redis-py writes them)."""
    if not set(map(type, args)) <= _TEXT:  # (at C speed: the store's own calls send text only)
        args = [a if a.__class__ is str else _text(a) for a in args]
    return _encode([base, *args])


def _text(value: Any) -> str:
    if isinstance(value, str):  # a subclass: its text, as redis-py encodes it (not its str(), which an Enum changes)
        return value.encode().decode()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return repr(value)
    raise TypeError(f"a Redis script argument must be str, bytes, int or float, not {type(value).__name__}")

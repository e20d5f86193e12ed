"""What checking a job needs, shared by the validator (validate.py), the runners' own rules (each runner's `check`)
and the routes that read task types or msgspec errors: the running poulpe's limits, the task type rule, and
msgspec's errors turned into a field and a reason."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from poulpe.job import DEFAULT_RETRY, RetryPolicy
from poulpe.keys import KEY_RULE

# A task type (a QUEUE job's name, an external worker's type, easyTask's type): 1-64 characters, each an ASCII letter,
# digit, `.`, `_` or `-`, or a letter, mark or digit of another script within the Basic Multilingual Plane (easyTask
# kept its types in MySQL utf8 identifiers: `下载` was a type, an emoji or a space was not). TYPE_PATTERN is the same
# rule as the schema can say it (any non-ASCII character passes there; `is_task_type` is the rule).
TYPE_MAX = 64
TYPE_PATTERN = r"^[^\x00-\x2c/:-@\[-^`{-\x7f]{1,64}$"
TYPE_RULE = "1-64 characters: letters and digits (of any script), . _ -"
_TYPE_ASCII = re.compile(r"[A-Za-z0-9._-]{1,64}")
_MSGSPEC_PATH = re.compile(r" - at (?:`key` in )?`\$((?:\.[^`.\[]+|\[\d+\]|\[\.\.\.\])*)`$")
_UNKNOWN_FIELD = re.compile(r"unknown field `([^`]+)`")


@dataclass(frozen=True, slots=True)
class Limits:
    """What validation needs to know about the running poulpe."""

    workers: int = 8
    exec_dir: Path | None = None
    allow_hosts: tuple[str, ...] = ()
    mail_enabled: bool = False
    default_retry: RetryPolicy = DEFAULT_RETRY


def is_task_type(name: str) -> bool:
    """Whether `name` can be a task type (the rule above TYPE_PATTERN)."""
    if _TYPE_ASCII.fullmatch(name):
        return True
    return 1 <= len(name) <= TYPE_MAX and all(_type_char(c) for c in name)


def _type_char(c: str) -> bool:
    if c.isascii():
        return c.isalnum() or c in "._-"
    return c <= "\uffff" and unicodedata.category(c)[0] in "LMN"


def split_msgspec(message: str) -> tuple[str | None, str]:
    """msgspec says 'Expected `int` - at `$.retry.max`': keep the field and a readable reason."""
    field = None
    path = _MSGSPEC_PATH.search(message)
    if path:
        message = message[: path.start()]
        field = path.group(1).replace("[...]", "").lstrip(".") or None
    unknown = _UNKNOWN_FIELD.search(message)
    if unknown:
        field = f"{field}.{unknown.group(1)}" if field else unknown.group(1)
        return field, f"unknown field {unknown.group(1)!r}"
    if field == "id" and "regex" in message:
        return field, "id must be 1 to 128 characters of A-Z a-z 0-9 . _ : -"
    if field == "key" and "regex" in message:
        return field, KEY_RULE
    if field == "labels":
        return field, "labels: at most 16, keys of 1-64 characters a-z 0-9 _ . -, values of at most 256 characters"
    if message.startswith("Object missing required field"):
        missing = message.split("`")[1]
        field = f"{field}.{missing}" if field else missing
        return field, f"{missing} is required"
    return field, f"{field or 'body'}: {message[0].lower()}{message[1:]}" if message else "invalid value"

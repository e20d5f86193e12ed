"""A cron line's bracketed options (SPEC 10.5): `[tz=Asia/Tokyo overlap=skip catchup=60 jitter=2 key=k priority=5
paused=true]` before the time fields.

Pure parsing: each option is checked when the file is read, so a bad one refuses the file with its line number, at
start-up, on reload and in `poulpe cron check` alike (one parser, one verdict).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from poulpe.errors import BadRequest
from poulpe.keys import check_key

MAX_CATCHUP = 31 * 86400  # a month of missed fires at most: a per-second line replays at most MAX_REPLAYED of them
MAX_JITTER = 86400.0
OPTION_NAMES = ("tz", "overlap", "catchup", "jitter", "key", "priority", "paused")


class Overlap(enum.StrEnum):
    ALLOW = "allow"  # fires run side by side
    SKIP = "skip"  # a fire is skipped while the line's previous fire is not final
    REPLACE = "replace"  # the previous unfinished fire is cancelled (a running one is stopped)


@dataclass(frozen=True, slots=True)
class CronOptions:
    tz: str | None = None  # None: --timezone
    overlap: Overlap = Overlap.ALLOW
    catchup: int = 0
    jitter: float = 0.0
    key: str | None = None
    priority: int | None = None
    paused: bool = False

    def canonical(self) -> str:
        """The options that differ from the defaults, in a fixed order: part of the line's fingerprint (a line
        without options keeps the fingerprint it had before options existed)."""
        words = []
        for name in OPTION_NAMES:
            value = getattr(self, name)
            if value == getattr(_DEFAULTS, name):
                continue
            if isinstance(value, bool):
                value = str(value).lower()
            elif isinstance(value, float):
                value = f"{value:g}"
            words.append(f"{name}={value}")
        return " ".join(words)

    def zone(self, default: ZoneInfo) -> ZoneInfo:
        return default if self.tz is None else ZoneInfo(self.tz)


NO_OPTIONS = _DEFAULTS = CronOptions()


def split_options(text: str) -> tuple[CronOptions, str]:
    """The options at the start of a stripped line (if it starts with `[`) and the rest of the line; ValueError
    saying what is wrong."""
    if not text.startswith("["):
        return _DEFAULTS, text
    end = text.find("]")
    if end < 0:
        raise ValueError("the options' bracket is not closed: write [name=value ...] before the time fields")
    return parse_options(text[1:end]), text[end + 1 :].strip()


def parse_options(inside: str) -> CronOptions:
    values: dict[str, object] = {}
    for word in inside.split():
        name, eq, value = word.partition("=")
        if not eq or not value:
            raise ValueError(f"option {word!r} needs a value: write name=value ({' '.join(OPTION_NAMES)})")
        if name not in OPTION_NAMES:
            raise ValueError(f"unknown option {name!r}; the options are {' '.join(OPTION_NAMES)}")
        if name in values:
            raise ValueError(f"option {name!r} is given twice")
        values[name] = _value(name, value)
    return CronOptions(**values)  # type: ignore[arg-type]


def _value(name: str, value: str) -> object:
    if name == "tz":
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError(f"tz={value}: unknown time zone; use an IANA name such as UTC or Asia/Tokyo") from None
        return value
    if name == "overlap":
        if value not in Overlap.__members__.values():
            raise ValueError(f"overlap={value}: write overlap=allow, overlap=skip or overlap=replace")
        return Overlap(value)
    if name == "catchup":
        if not value.isdigit() or int(value) > MAX_CATCHUP:
            raise ValueError(f"catchup={value}: a whole number of seconds from 0 to {MAX_CATCHUP}")
        return int(value)
    if name == "jitter":
        try:
            jitter = float(value)
        except ValueError:
            jitter = math.nan
        if not 0 <= jitter <= MAX_JITTER:
            raise ValueError(f"jitter={value}: a number of seconds from 0 to {MAX_JITTER:g}")
        return jitter
    if name == "key":
        try:
            return check_key(value)
        except BadRequest as exc:
            raise ValueError(f"key={value}: {exc.message}") from None
    if name == "priority":
        if not value.lstrip("-").isdigit() or not -100 <= int(value) <= 100:
            raise ValueError(f"priority={value}: an integer from -100 to 100")
        return int(value)
    if value not in ("true", "false"):
        raise ValueError(f"paused={value}: write paused=true or paused=false")
    return value == "true"

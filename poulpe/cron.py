"""The cron file (SPEC 5): its lines, and their fire times in a time zone, daylight saving included.

Pure logic: no event loop, no I/O beyond reading the file. Each fire becomes an ordinary job (`CronLine.job_fields`)
that goes through the validator like any other intake.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter  # type: ignore[import-untyped]

from poulpe.cron_options import NO_OPTIONS, CronOptions, split_options
from poulpe.errors import BadRequest
from poulpe.job import Method
from poulpe.runners.mail import check_mail

FIELDS = ("second", "minute", "hour", "day-of-month", "month", "day-of-week", "year")
_BOUNDS = ((0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 7), (1970, 2099))
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_WEEKDAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_NAMES = {4: {name: n for n, name in enumerate(_MONTHS, 1)}, 5: {name: n for n, name in enumerate(_WEEKDAYS)}}
_ITEM = re.compile(r"(?:(\*)|([0-9]+|[A-Z]+)(?:-([0-9]+|[A-Z]+))?)(?:/([0-9]+))?")
CRON_METHODS = tuple(m for m in Method if m is not Method.QUEUE)
_BODY_METHODS = (Method.POST, Method.PUT, Method.PATCH)
# croniter stops looking 50 years ahead by default: "0 0 0 1 1 * 2090" would never fire.
_MAX_YEARS = _BOUNDS[6][1] - _BOUNDS[6][0] + 1


class CronError(ValueError):
    """A cron file that cannot be used. The message names the source and, for a bad line, its number."""

    def __init__(self, message: str, line_no: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line_no = line_no


@dataclass(frozen=True, slots=True)
class CronLine:
    """One job line. `fingerprint` depends only on what the line says (not on its number): the same line gives the
    same job ids in every process, so processes sharing a store fire each time once."""

    line_no: int
    expr: str  # the seven time fields as written
    name: str
    method: Method
    params: str  # the rest of the line, stripped; may be empty
    schedule: str  # the seven fields as croniter reads them: numbers only, `?` as `*`
    options: CronOptions = NO_OPTIONS
    fingerprint: str = field(init=False)

    def __post_init__(self) -> None:
        parts = [self.schedule, self.name, self.method.value, self.params]
        if options := self.options.canonical():  # a line without options keeps its fingerprint from before them
            parts.append(options)
        what = "\x1f".join(parts)
        object.__setattr__(self, "fingerprint", hashlib.sha256(what.encode()).hexdigest()[:12])

    def job_id(self, fire: float) -> str:
        return f"cron:{self.fingerprint}:{int(fire)}"

    def run_id(self, now: float) -> str:
        """The id of a fire asked for by hand (`POST /cron/{id}/run`), in unix milliseconds."""
        return f"cron:{self.fingerprint}:run:{int(now * 1000)}"

    def jitter(self, job_id: str) -> float:
        """The delay of this fire within 0..jitter s, derived from its id: every process computes the same one."""
        if not self.options.jitter:
            return 0.0
        share = int.from_bytes(hashlib.sha256(job_id.encode()).digest()[:8], "big") / 2**64
        return round(share * self.options.jitter, 3)

    def job_fields(self, fire: float, *, job_id: str | None = None, jitter: bool = True) -> dict[str, Any]:
        """The job JSON (SPEC 2.1) of the fire at `fire`, for `validate.job_from_object`: run at `fire` plus the
        fire's jitter (`jitter=False`: at `fire` itself)."""
        job_id = job_id or self.job_id(fire)
        job: dict[str, Any] = {"id": job_id, "method": self.method.value, "name": self.name}
        if self.params:
            job["params"] = json.loads(self.params) if self.method is Method.MAIL_TO else self.params
        job["at"] = fire + (self.jitter(job_id) if jitter else 0.0)
        if self.options.key is not None:
            job["key"] = self.options.key
        if self.options.priority is not None:
            job["priority"] = self.options.priority
        return job


def parse_cron(text: str, *, source: str = "cron file") -> list[CronLine]:
    """Every job line of a cron file; raises CronError naming `source` and the line number of the first bad line."""
    lines = []
    for line_no, raw in enumerate(text.removeprefix("\ufeff").split("\n"), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith(("#", "//")):
            continue
        try:
            lines.append(_parse_line(line_no, stripped))
        except ValueError as exc:
            raise CronError(f"{source} line {line_no}: {exc}", line_no) from None
    return lines


def load_cron(path: Path) -> list[CronLine]:
    """Read and parse a cron file; CronError (naming the path) when it cannot be read or a line is bad."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CronError(f"{path}: cannot read the cron file: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_no = data.count(b"\n", 0, exc.start) + 1
        raise CronError(f"{path} line {line_no}: not UTF-8 text", line_no) from None
    return parse_cron(text, source=str(path))


def fire_times(line: CronLine, after: float, tz: ZoneInfo) -> Iterator[float]:
    """The line's fire times strictly after `after`, in order, as unix seconds (whole seconds).

    Times are wall-clock times in `tz`. A wall time that does not exist (spring-forward gap) is skipped, not moved;
    one that happens twice (fall-back) fires once, at its first occurrence: in the repeated hour only wall times
    not seen before fire, so a `*/15` minute line fires 02:00..02:45 once and then 03:00.
    """
    # croniter is given naive wall-clock times, where it counts right; with aware times it moves a time in the gap to
    # the end of the gap and fires a repeated time twice. Each wall time is mapped to its instant here instead.
    base = math.floor(after)  # fires are whole seconds: "after 5.5" is "after 5", and 5 converts exactly
    wall = datetime.fromtimestamp(base, tz).replace(tzinfo=None)
    it = croniter(line.schedule, wall, second_at_beginning=True, max_years_between_matches=_MAX_YEARS)
    while True:
        try:
            candidate: datetime = it.get_next(datetime)
        except CroniterBadDateError:  # no match left (a past year)
            return
        moment = candidate.replace(tzinfo=tz)  # fold=0: the first occurrence of a repeated wall time
        if moment.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != candidate:
            continue  # the wall time is in a gap: it never happens (a per-second line walks the gap: once a year)
        fire = moment.timestamp()
        if fire > base:  # `after` in the second pass of a repeated hour: the first pass of these wall times is over
            yield fire


def next_fire(line: CronLine, after: float, tz: ZoneInfo) -> float | None:
    """The first fire time strictly after `after` (unix seconds), or None when the line never fires again."""
    return next(fire_times(line, after, tz), None)


def report(path: Path, lines: list[CronLine], *, tz: str = "UTC", now: float | None = None, count: int = 3) -> str:
    """The report of `poulpe cron check FILE` on lines already checked: each line and its next `count` fire times
    in `tz`; raises CronError for an unknown zone."""
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise CronError(f"unknown time zone {tz!r}: use an IANA name such as UTC or Europe/Paris") from None
    now = time.time() if now is None else now
    out = [f"{path}: {len(lines)} job line{'' if len(lines) == 1 else 's'}, times in {tz}"]
    for line in lines:
        own = line.options.zone(zone)
        upcoming = itertools.islice(fire_times(line, now, own), count)
        fires = [datetime.fromtimestamp(f, own).isoformat() for f in upcoming]
        options = line.options.canonical()
        out.append(
            f"line {line.line_no}: {f'[{options}] ' if options else ''}{line.expr}  {line.method.value} {line.name}"
            f"  (cron:{line.fingerprint})"
        )
        out.append(f"    next: {', '.join(fires) if fires else 'never (no fire time left)'}")
    return "\n".join(out) + "\n"


def _parse_line(line_no: int, text: str) -> CronLine:
    options, text = split_options(text)
    words = text.split()
    if len(words) < 9 or not _is_method(words[8]):
        raise ValueError(_shape_error(words))
    method = Method(words[8].upper())
    if method is Method.QUEUE:
        raise ValueError(f"QUEUE jobs wait for external workers and cannot be cron jobs; use {_methods()}")
    params = text.split(None, 9)[9].strip() if len(words) > 9 else ""
    if method is Method.MAIL_TO:
        try:
            check_mail(words[7], params or None)
        except BadRequest as exc:
            raise ValueError(exc.message) from None
    elif method in _BODY_METHODS and params and not _is_json(params):
        raise ValueError(f"params of a {method.value} line are its JSON body, and this is not JSON")
    fields = [_field(i, word) for i, word in enumerate(words[:7])]
    schedule = " ".join(fields)
    try:
        croniter(schedule, second_at_beginning=True)
    except CroniterError as exc:  # the checks above should have caught it: say what croniter said
        raise ValueError(f"bad time fields: {exc}") from None
    # "30 FEB" never fires (29 FEB neither, in 2027 alone); with a weekday given, that weekday would fire instead.
    if fields[5] == "*" and not croniter.is_valid(schedule, second_at_beginning=True, strict=True):
        year = "" if fields[6] == "*" else f" of year {words[6]}"
        raise ValueError(f"day-of-month {words[3]} never occurs in month {words[4]}{year}")
    return CronLine(line_no, " ".join(words[:7]), words[7], method, params, schedule, options)


def _field(i: int, word: str) -> str:
    """One time field → croniter's spelling, each value checked against the field's range."""
    label = f"field {i + 1} ({FIELDS[i]})"
    if word == "?":
        return "*"  # croniter takes `?` only in the day fields
    out = []
    for item in word.upper().split(","):
        match = _ITEM.fullmatch(item) if item.isascii() else None
        if match is None:
            raise ValueError(f"{label}: {item!r} is not valid; write *, a, a-b, a,b, */n, a-b/n or a lone ?")
        star, low, high, step = match.groups()
        if step is not None and int(step) == 0:
            raise ValueError(f"{label}: step 0 in {item!r}; a step is 1 or more")
        if star:
            out.append(item)
            continue
        a = _value(i, low, label)
        b = a if high is None else _value(i, high, label)
        if i == 6 and b < a:
            raise ValueError(f"{label}: range {item!r} runs backwards")
        if a == b and high is not None:
            out.append(str(a))  # croniter reads "5-5" as the whole field
        else:
            out.append(f"{a}{'' if high is None else f'-{b}'}{'' if step is None else f'/{step}'}")
    return ",".join(out)


def _value(i: int, text: str, label: str) -> int:
    low, high = _BOUNDS[i]
    if text.isdigit():
        value = int(text)
        if not low <= value <= high:
            raise ValueError(f"{label} value {value} is out of range {low}-{high}")
        return value
    names = _NAMES.get(i)
    if names is None:
        raise ValueError(f"{label}: {text!r} is not a number {low}-{high}")
    if text not in names:
        kind = "a month name (JAN..DEC)" if i == 4 else "a weekday name (MON..SUN)"
        raise ValueError(f"{label}: {text!r} is not {kind} or a number {low}-{high}")
    return names[text]


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True


def _is_method(word: str) -> bool:
    return word.isascii() and word.upper() in Method.__members__


def _methods() -> str:
    return " ".join(m.value for m in CRON_METHODS)


def _shape_error(words: list[str]) -> str:
    """Why a line does not read as `7 time fields, name, method, params`."""
    at = next((i for i, word in enumerate(words[:11]) if i >= 2 and _is_method(word)), None)
    if at is not None and at != 8:
        return (
            f"found {at - 1} time fields before the name {words[at - 1]!r}; a line needs 7: "
            "second minute hour day-of-month month day-of-week year"
        )
    if len(words) <= 7:
        return "missing the name and method after the time fields (a line is: 7 time fields, name, method, params)"
    if len(words) == 8:
        return f"missing the method after the name {words[7]!r}; use {_methods()}"
    return f"unknown method {words[8]!r}; use {_methods()}"

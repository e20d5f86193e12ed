"""The cron routes (SPEC 10.5): `GET /cron` (each line, its id, options, pause, next fires and last fire), run a line
now, pause or resume it, and backfill a range of its fire times.

A line's id is its fingerprint. A run now is a job `cron:<fp>:run:<unix ms>`; a backfill submits the ids real fires
have, so a fire already made, by the schedule, catch-up or an earlier backfill, is never made twice.
"""

from __future__ import annotations

import itertools
import math
import re
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from poulpe.cron import CronLine, fire_times
from poulpe.crontab import Crontab
from poulpe.errors import BadRequest, NotFound
from poulpe.job import Job
from poulpe.responses import json_response

NEXT_FIRES = 3
MAX_BACKFILL = 10_000
_CHUNK = 1000


class CronUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """`PUT /cron/{id}`: pause or resume the line (stored, kept across reloads while the line is unchanged)."""

    paused: bool


class Backfill(msgspec.Struct, forbid_unknown_fields=True, rename={"start": "from", "end": "to"}):
    """`POST /cron/{id}/backfill`: fire each of the line's scheduled times from `from` to `to` (both included; unix
    seconds or ISO-8601 with an offset) once. Times after now are left to the schedule."""

    start: float | str
    end: float | str


_update = msgspec.json.Decoder(CronUpdate)
_backfill = msgspec.json.Decoder(Backfill)
_FIELD = re.compile(r"`\$\.([a-z_]+)`|field `([a-z_]+)`")


def _crontab(request: Request) -> Crontab:
    crontab: Crontab | None = request.state.crontab
    if crontab is None:
        raise NotFound("no cron file: start poulpe with --cron FILE")
    return crontab


def _line(request: Request) -> tuple[Crontab, CronLine]:
    crontab = _crontab(request)
    return crontab, crontab.line(request.path_params["id"])


async def cron_lines(request: Request) -> Response:
    """The cron file's job lines, their state and next fire times (an empty list without --cron)."""
    crontab: Crontab | None = request.state.crontab
    if crontab is None:
        return json_response({"file": None, "timezone": None, "lines": []})
    upcoming: dict[tuple[str, str], list[float]] = {}  # lines sharing a schedule and zone share their next fires
    lasts = await _last_fires(crontab, crontab.lines)
    lines = [_view(crontab, line, upcoming, lasts) for line in crontab.lines]
    return json_response({"file": str(crontab.path), "timezone": crontab.tz.key, "lines": lines})


async def _last_fires(crontab: Crontab, lines: list[CronLine]) -> dict[str, Job]:
    """Each line's latest fire, by fingerprint, read in one go."""
    shown = {line.fingerprint for line in lines}
    ids = {state.last_id: fp for fp, state in crontab.stored.items() if state.last_id and fp in shown}
    wanted = list(ids)
    return {ids[job.id]: job for job in await crontab.manager.get_many(wanted)}


def _view(
    crontab: Crontab, line: CronLine, upcoming: dict[tuple[str, str], list[float]], lasts: dict[str, Job]
) -> dict[str, Any]:
    options = line.options
    last_job = lasts.get(line.fingerprint)
    zone = crontab.zone(line)
    key = (line.schedule, zone.key)
    if key not in upcoming:
        upcoming[key] = list(itertools.islice(fire_times(line, crontab.clock(), zone), NEXT_FIRES))
    return {
        "id": line.fingerprint,
        "line": line.line_no,
        "expr": line.expr,
        "name": _without_credentials(line.name),
        "method": line.method.value,
        "timezone": zone.key,
        "overlap": options.overlap.value,
        "catchup": options.catchup,
        "jitter": options.jitter,
        "key": options.key,
        "priority": options.priority,
        "paused": crontab.paused(line),
        "id_prefix": f"cron:{line.fingerprint}:",
        "next": upcoming[key],
        "last": None if last_job is None else {"id": last_job.id, "status": last_job.status.value},
    }


async def run_line(request: Request) -> Response:
    """Fire the line now, whatever its pause or overlap (an operator asked): 202 with the new job's state."""
    crontab, line = _line(request)
    job = await crontab.run_now(line)
    return json_response(job.to_result(), 202)


async def put_line(request: Request) -> Response:
    crontab, line = _line(request)
    update = _decode(_update, await request.body(), "paused must be true or false")
    await crontab.set_paused(line, update.paused)
    return json_response(_view(crontab, line, {}, await _last_fires(crontab, [line])))


async def backfill_line(request: Request) -> Response:
    crontab, line = _line(request)
    ask = _decode(_backfill, await request.body(), "from and to are unix seconds or ISO-8601 times with an offset")
    start, end = _moment(ask.start, "from"), min(_moment(ask.end, "to"), crontab.clock())
    if end < start:
        raise BadRequest("to must not be before from (times after now are left to the schedule)", "to")
    fires = list(itertools.islice(_between(line, start, end, crontab), MAX_BACKFILL + 1))
    if len(fires) > MAX_BACKFILL:
        raise BadRequest(f"the range holds more than {MAX_BACKFILL} fire times: backfill it in parts", "to")
    created = 0
    for at in range(0, len(fires), _CHUNK):
        created += await crontab.backfill(line, fires[at : at + _CHUNK])
    return json_response({"id": line.fingerprint, "fires": len(fires), "created": created})


def _between(line: CronLine, start: float, end: float, crontab: Crontab) -> Any:
    """Fire times from `start` to `end`, both included (fires are whole seconds)."""
    return itertools.takewhile(lambda fire: fire <= end, fire_times(line, math.ceil(start) - 1, crontab.zone(line)))


def _moment(value: float | str, field: str) -> float:
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            moment = None
        if moment is None or moment.tzinfo is None:
            raise BadRequest(f"{field} must be unix seconds or an ISO-8601 time with an offset", field)
        return moment.timestamp()
    if not 0 <= value < 4102444800:
        raise BadRequest(f"{field} must be a time between 1970 and 2099", field)
    return value


def _decode(decoder: msgspec.json.Decoder[Any], body: bytes, rule: str) -> Any:
    try:
        return decoder.decode(body)
    except msgspec.DecodeError as exc:
        found = _FIELD.search(str(exc))
        field = (found.group(1) or found.group(2)) if found else None
        if "unknown field" in str(exc):
            raise BadRequest(str(exc).replace("Object contains unknown", "unknown"), field) from None
        raise BadRequest(rule, field) from None


def _without_credentials(name: str) -> str:
    """A URL's user and password are masked: the dashboard is no place for them."""
    parts = urlsplit(name)
    if parts.scheme in ("http", "https") and "@" in parts.netloc:
        host = parts.netloc.rsplit("@", 1)[1]
        return urlunsplit(parts._replace(netloc=f"***@{host}"))
    return name

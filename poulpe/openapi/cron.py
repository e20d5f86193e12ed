"""The cron routes (SPEC 10.5) as /openapi.json describes them; their bodies are the structs cron_api.py decodes."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from poulpe.cron_api import Backfill, CronUpdate
from poulpe.cron_options import Overlap
from poulpe.job import Method, Status
from poulpe.openapi.answers import Count, Result
from poulpe.openapi.build import Answer, Op, Param
from poulpe.openapi.routes import errors

_WORDS = {404: "No cron file (poulpe runs without --cron), or no line with this id in it"}
LINE_ID = Param(
    "id",
    "path",
    Annotated[str, Meta(min_length=1)],
    "The line's id (its fingerprint, in GET /cron).",
    required=True,
    example="e0f5047fca2e",
)


class LastFire(msgspec.Struct):
    id: str
    status: Status


class CronLineState(msgspec.Struct, kw_only=True):
    id: Annotated[str, Meta(description="The line's fingerprint: its fires are jobs `cron:<id>:<fire unix time>`.")]
    line: Annotated[int, Meta(ge=1)]
    expr: str
    name: str
    method: Method
    timezone: str
    overlap: Overlap
    catchup: Count
    jitter: Annotated[float, Meta(ge=0)]
    key: str | None
    priority: int | None
    paused: Annotated[bool, Meta(description="Paused by the file's `paused=` or by PUT /cron/{id} (which wins).")]
    id_prefix: str
    next: Annotated[list[float], Meta(description="The next fire times, unix seconds (before jitter).")]
    last: Annotated[LastFire | None, Meta(description="The line's latest fire (scheduled or run now).")]


class Cron(msgspec.Struct):
    file: str | None
    timezone: str | None
    lines: list[CronLineState]


class Backfilled(msgspec.Struct):
    id: str
    fires: Annotated[int, Meta(ge=0, description="Fire times in the range.")]
    created: Annotated[int, Meta(ge=0, description="New jobs: the others were made before (same ids).")]


CRON = [
    Op(
        "get",
        "/cron",
        "cronLines",
        "The cron file's job lines: ids, options, pause, next fire times, last fire (empty without --cron)",
        answers={200: Answer(Cron, "Cron lines"), **errors()},
    ),
    Op(
        "put",
        "/cron/{id}",
        "putCronLine",
        "Pause or resume a cron line: stored, shared by every process, kept across reloads while the line is unchanged",
        params=(LINE_ID,),
        body=CronUpdate,
        answers={200: Answer(CronLineState, "The line"), **errors(400, 404, 503, words=_WORDS)},
    ),
    Op(
        "post",
        "/cron/{id}/run",
        "runCronLine",
        "Fire a cron line now (job id `cron:<id>:run:<unix ms>`), paused or not",
        params=(LINE_ID,),
        answers={202: Answer(Result, "The new job"), **errors(404, 503, words=_WORDS)},
    ),
    Op(
        "post",
        "/cron/{id}/backfill",
        "backfillCronLine",
        "Fire each of the line's scheduled times from `from` to `to` once (the ids real fires have: never twice); at "
        "most 10,000 fire times, none after now",
        params=(LINE_ID,),
        body=Backfill,
        answers={200: Answer(Backfilled, "What was made"), **errors(400, 404, 503, words=_WORDS)},
    ),
]

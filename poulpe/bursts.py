"""Bursts and time windows (SPEC 10.2): what `debounce`, `unique` and `deadline` look like on the wire, and the
rules that read them into a job.

- `debounce {key, delay, max_wait}`: submissions with one key replace the job that waits under it, until it starts.
- `unique {key, for}`: for `for` seconds after a job is accepted, no other job with its unique key is made. The key
  defaults to `unique_key(method, name, params)`.
- `deadline`: not started by then, the job ends dead without an attempt (poulpe/deadlines.py).
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Annotated, Any

import msgspec

from poulpe.errors import BadRequest
from poulpe.job import Job, Method, Status
from poulpe.keys import KEY_WIRE

MAX_WINDOW = 10 * 366 * 86400  # seconds: as far as a delay may go
Window = Annotated[float, msgspec.Meta(ge=0, le=MAX_WINDOW)]
_hash_encoder = msgspec.json.Encoder(order="sorted")


class DebounceIn(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """Submissions with this key replace the job waiting under it (method, name, params, headers, meta) and move
    its time to now + `delay`, never past its first submission + `max_wait`. Once it started, a new job is made."""

    key: Annotated[str, msgspec.Meta(pattern=KEY_WIRE, description="The debounce key (no default).")]
    delay: Annotated[Window, msgspec.Meta(description="Seconds after the latest submission the job runs.")]
    max_wait: Annotated[
        Window | None,
        msgspec.Meta(description="At most this many seconds after the first submission (absent: no ceiling)."),
    ] = None


class UniqueIn(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """For `for` seconds after a job is accepted, a job with the same unique key is not made: the answer is the
    first job with `duplicate: true`."""

    for_: Annotated[
        Annotated[float, msgspec.Meta(gt=0, le=MAX_WINDOW)], msgspec.Meta(description="The window, seconds.")
    ] = msgspec.field(name="for")
    key: Annotated[
        Annotated[str, msgspec.Meta(pattern=KEY_WIRE)] | None,
        msgspec.Meta(description="The unique key; absent: a hash of the job's method, name and params."),
    ] = None


def unique_key(method: str, name: str, params: Any) -> str:
    """The default unique key: `h:` and the first 32 hex digits of the SHA-256 of the JSON array
    `[method, name, params]`, encoded compactly with object keys sorted (the method in upper case, the name as
    given, params once decoded: whitespace and key order do not count, a string and an object do)."""
    return "h:" + hashlib.sha256(_hash_encoder.encode([method, name, params])).hexdigest()[:32]


def parse_moment(value: float | str, field: str) -> float:
    """Unix seconds, or an ISO-8601 time with a UTC offset; BadRequest naming `field` otherwise."""
    if isinstance(value, float | int):
        return float(value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"{field} must be unix seconds or an ISO-8601 time with an offset", field) from None
    if moment.tzinfo is None:
        raise BadRequest(f"{field} needs a UTC offset (e.g. 2030-01-01T09:00:00+01:00 or ...Z)", field)
    return moment.timestamp()


def apply_windows(
    job: Job, *, debounce: DebounceIn | None, unique: UniqueIn | None, deadline: float | str | None, now: float
) -> None:
    """Write the windows a submission asked for into its job (checked together: 400 naming the field)."""
    if deadline is not None:
        job.deadline = parse_moment(deadline, "deadline")
    if debounce is not None and unique is not None:
        raise BadRequest("give debounce or unique, not both", "unique")
    if debounce is not None:
        if job.method is Method.QUEUE:
            raise BadRequest("debounce is for jobs poulpe runs itself, not QUEUE jobs", "debounce")
        job.debounce = debounce.key
        job.run_at = max(job.run_at, now + debounce.delay)
        if job.run_at > now:
            job.status = Status.SCHEDULED
        job.debounce_until = None if debounce.max_wait is None else now + max(debounce.max_wait, debounce.delay)
    if unique is not None:
        job.unique = unique.key or unique_key(job.method.value, job.name, job.params)
        job.unique_until = now + unique.for_


def replace_pending(pending: Job, submitted: Job, now: float) -> Job:
    """The waiting job of a debounce window, with a new submission's fields and time: its method, name, params,
    headers and meta; its run time now + the new delay, never past the first submission's ceiling."""
    run_at = submitted.run_at
    if pending.debounce_until is not None:
        run_at = min(run_at, pending.debounce_until)
    replaced = msgspec.structs.replace(
        pending,
        method=submitted.method,
        name=submitted.name,
        params=submitted.params,
        headers=submitted.headers,
        meta=submitted.meta,
        run_at=max(run_at, now),
    )
    replaced.status = Status.SCHEDULED if replaced.run_at > now else Status.QUEUED
    return replaced

"""Job JSON → Job. The one validator every intake uses; each error names the field at fault."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec

from poulpe.bursts import DebounceIn, UniqueIn, apply_windows, parse_moment
from poulpe.checks import TYPE_PATTERN as TYPE_PATTERN  # where the schema (openapi*.py) reads it
from poulpe.checks import TYPE_RULE, is_task_type, split_msgspec
from poulpe.checks import Limits as Limits  # what every intake hands the validator
from poulpe.errors import BadRequest
from poulpe.job import HTTP_METHODS, QUERY_METHODS, Job, Method, RetryPolicy, Status
from poulpe.keys import KEY_WIRE
from poulpe.outbound import check_url
from poulpe.runners.exec import check as check_exec
from poulpe.runners.http import check as check_http
from poulpe.runners.mail import check as check_mail
from poulpe.tracing import TRACEPARENT_PATTERN, valid_traceparent

MAX_BATCH = 1000
MAX_PARAMS = 512 * 1024
MAX_META = 16 * 1024
MAX_SECONDS = 10 * 366 * 86400  # ten years: far enough for any schedule, small enough to stay exact
MAX_UNIX = 253402300799  # 9999-12-31T23:59:59Z
ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"  # as documented (ECMA regex: `$` is the very end)
_ID_WIRE = r"^[A-Za-z0-9._:-]{1,128}\Z"  # Python's `$` would also match before a final newline
_HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$")
_RESERVED_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})

Seconds = Annotated[float, msgspec.Meta(ge=0, le=MAX_SECONDS)]
_NULL = msgspec.Raw(b"null")


def null_raw() -> msgspec.Raw:
    """An absent Raw field (a factory, not a default: msgspec cannot write a Raw default into a JSON Schema)."""
    return _NULL


def any_case(words: Iterable[str]) -> str:
    """A pattern matching these words in any ASCII letter case: `get`, `Get`, `GET`."""
    spelled = ["".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in word) for word in words]
    return "^(?:" + "|".join(spelled) + ")$"


def _doc(text: str, **schema: Any) -> msgspec.Meta:
    """What /openapi.json says of a field beyond its type (poulpe/openapi): a description, a pattern the field's
    own check enforces after decoding."""
    return msgspec.Meta(description=text, extra_json_schema=schema or None)


class RetryIn(msgspec.Struct, forbid_unknown_fields=True):
    """Retry policy of this job, instead of --max_retry and --retry_interval."""

    max: Annotated[Annotated[int, msgspec.Meta(ge=0, le=100)] | None, _doc("Retries after the first attempt.")] = None
    interval: Annotated[Seconds | None, _doc("Seconds between attempts.")] = None
    backoff: Annotated[Literal["fixed", "exponential"] | None, _doc("Exponential doubles.")] = None
    max_interval: Annotated[Seconds | None, _doc("Ceiling of the exponential backoff.")] = None
    intervals: Annotated[
        Annotated[list[Seconds], msgspec.Meta(min_length=1, max_length=100)] | None,
        _doc("One retry after each listed interval (kingtask's time_interval); not with max/interval/backoff."),
    ] = None
    max_duration: Annotated[
        Seconds | None, _doc("No retry starts later than this many seconds after the first attempt began.")
    ] = None


class JobIn(msgspec.Struct, forbid_unknown_fields=True):
    """The wire shape of SPEC 2.1, checked by type; the rules between fields are checked in `_build`."""

    method: Annotated[
        str,
        _doc(
            f"What the job does, in any letter case: {', '.join(m.value for m in Method)}.",
            pattern=any_case(m.value for m in Method),
        ),
    ]
    name: Annotated[
        str,
        msgspec.Meta(min_length=1, max_length=4096),
        _doc(
            "HTTP methods: an http or https URL with a host (and a host in --allow_hosts when set). EXEC: a "
            "program's file name inside --exec_dir. MAIL_TO: the recipient. QUEUE: the task type (1-64 letters and "
            "digits of any script, . _ -)."
        ),
    ]
    id: Annotated[
        Annotated[str, msgspec.Meta(pattern=_ID_WIRE)] | None,
        _doc(
            "Unique id, generated (UUID4) when absent. A known id is not stored twice: the answer is the existing "
            "job with `duplicate: true`."
        ),
    ] = None
    params: Annotated[
        msgspec.Raw,
        _doc(
            f"Any JSON, at most {MAX_PARAMS // 1024} KiB encoded. GET/DELETE: a query string or an object of scalars "
            "(or lists of them). POST/PUT/PATCH: the JSON body (a string must hold JSON). EXEC: arguments as a "
            "string (split like a shell) or an array of strings. QUEUE: handed to the worker as is."
        ),
    ] = msgspec.field(default_factory=null_raw)
    delay: Annotated[Seconds | None, _doc("Run this many seconds after acceptance; not with `at`.")] = None
    at: Annotated[
        Annotated[float, msgspec.Meta(ge=0, le=MAX_UNIX)] | Annotated[str, msgspec.Meta(max_length=64)] | None,
        _doc("Run at this unix time, or ISO-8601 time with a UTC offset; a past time means now. Not with `delay`."),
    ] = None
    cc: Annotated[
        Annotated[str, msgspec.Meta(max_length=4096)] | None,
        _doc("Worker numbers (0..--workers - 1) separated by spaces or commas: only these may run the job."),
    ] = None
    wait: Annotated[
        Annotated[float, msgspec.Meta(ge=0, le=300)] | None,
        _doc("Hold the answer up to this many seconds for the result."),
    ] = None
    timeout: Annotated[
        Annotated[float, msgspec.Meta(gt=0, le=86400)] | None, _doc("Limit of one attempt, seconds.")
    ] = None
    retry: RetryIn | None = None
    headers: Annotated[
        Annotated[dict[str, str], msgspec.Meta(max_length=64)] | None,
        _doc(
            "Extra request headers of an HTTP job. Names are HTTP tokens, not Host, Content-Length, "
            "Transfer-Encoding, Connection or Poulpe-*; values at most 8 KiB without line breaks."
        ),
    ] = None
    callback: Annotated[
        Annotated[str, msgspec.Meta(max_length=4096)] | None,
        _doc("An http or https URL the final result is POSTed to."),
    ] = None
    meta: Annotated[msgspec.Raw, _doc(f"Returned as is; at most {MAX_META // 1024} KiB.", type=["object", "null"])] = (
        msgspec.field(default_factory=null_raw)
    )
    key: Annotated[
        Annotated[str, msgspec.Meta(pattern=KEY_WIRE)] | None,
        _doc("Jobs sharing a key share its limits (PUT /keys/{key}) and take turns with other keys."),
    ] = None
    priority: Annotated[int, msgspec.Meta(ge=-100, le=100), _doc("Higher starts first.")] = 0
    traceparent: Annotated[
        Annotated[str, msgspec.Meta(pattern=TRACEPARENT_PATTERN, max_length=256)] | None,
        _doc("W3C trace context the job's attempts continue (else the request's traceparent header)."),
    ] = None
    debounce: DebounceIn | None = None
    unique: UniqueIn | None = None
    deadline: Annotated[
        Annotated[float, msgspec.Meta(ge=0, le=MAX_UNIX)] | Annotated[str, msgspec.Meta(max_length=64)] | None,
        _doc("Unix time or ISO-8601 time with a UTC offset: not started by then, the job ends dead, no attempt made."),
    ] = None


_FIELD_KEY = re.compile(
    rb'"('
    + b"|".join(
        name.encode()
        for name in {*JobIn.__struct_fields__, *RetryIn.__struct_fields__, *DebounceIn.__struct_fields__, "for"}
    )
    + rb')"'
)


@dataclass(slots=True)
class Submission:
    """A valid job, and how long its submitter wants to wait for the result."""

    job: Job
    wait: float | None = None


def parse_body(body: bytes, limits: Limits, *, now: float | None = None) -> list[Submission | BadRequest] | Submission:
    """Parse a request body: one job (→ Submission, or raises BadRequest) or a batch (→ one slot per job)."""
    now = time.time() if now is None else now
    head = body.lstrip()[:1]
    if head == b"[":
        try:
            items = msgspec.json.decode(body, type=list[msgspec.Raw])
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError, UnicodeDecodeError) as exc:
            raise BadRequest(f"body is not valid JSON: {_reason(exc)}") from None
        if not 1 <= len(items) <= MAX_BATCH:
            raise BadRequest(f"a batch holds 1 to {MAX_BATCH} jobs, this one has {len(items)}")
        slots: list[Submission | BadRequest] = []
        for raw in items:
            try:
                slots.append(parse_job(raw, limits, now=now))
            except BadRequest as exc:
                slots.append(exc)
        return slots
    return parse_job(body, limits, now=now)


def parse_job(raw: bytes | msgspec.Raw, limits: Limits, *, now: float | None = None) -> Submission:
    """One job object as JSON bytes → Submission; raises BadRequest naming the field."""
    try:
        wire = msgspec.json.decode(raw, type=JobIn)
    except msgspec.ValidationError as exc:
        field, reason = split_msgspec(str(exc))
        raise BadRequest(reason, field) from None
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as exc:
        raise BadRequest(f"body is not valid JSON: {_reason(exc)}") from None
    _check_unique_keys(bytes(raw))
    return _build(wire, limits, time.time() if now is None else now)


class _RandomPool:
    """os.urandom bytes fetched 4 KiB at a time: each call is a system call that gives up the GIL, and under a
    busy event loop taking it back is what one call per job costs most."""

    def __init__(self) -> None:
        self._hex = ""
        self._at = 0

    def take_hex(self) -> str:
        """32 random hex digits, never handed out twice."""
        if self._at >= len(self._hex):
            self._hex, self._at = os.urandom(4096).hex(), 0
        self._at += 32
        return self._hex[self._at - 32 : self._at]


_random = _RandomPool()


def new_id() -> str:
    """A random UUID4 in its usual text form; formatted directly, as `str(uuid.uuid4())` costs twice as much."""
    h = _random.take_hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


def _check_unique_keys(raw: bytes) -> None:
    """Refuse a job that gives a field twice: JSON parsers disagree on which value wins, so a proxy in front of
    poulpe and poulpe itself could read two different jobs from one body."""
    if b"\\u" not in raw:
        names = _FIELD_KEY.findall(raw)
        if len(names) == len(set(names)):
            return  # without \u escapes a field name is spelled literally: none appears twice, so none is repeated
    try:
        pairs = json.loads(raw, object_pairs_hook=list)
    except RecursionError:
        raise BadRequest("body is not valid JSON: nested too deeply") from None
    except ValueError as exc:  # msgspec read it, but params or meta hold what json refuses (bytes not UTF-8)
        raise BadRequest(f"body is not valid JSON: {_reason(exc)}") from None
    _unique(pairs, "")
    for key, value in pairs:
        if key in ("retry", "debounce", "unique") and isinstance(value, list):
            _unique(value, f"{key}.")


def _unique(pairs: list[tuple[str, Any]], prefix: str) -> None:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise BadRequest(f"{prefix}{key} is given twice", f"{prefix}{key}")
        seen.add(key)


def job_from_object(obj: Any, limits: Limits, *, now: float | None = None) -> Submission:
    """The same validation for a job given as Python data (compat routes, cron, Kafka)."""
    return parse_job(msgspec.json.encode(obj), limits, now=now)


def _build(wire: JobIn, limits: Limits, now: float) -> Submission:
    try:
        if not wire.method.isascii():  # "po\u017ft".upper() is "POST": only ASCII letters name a method
            raise ValueError(wire.method)
        method = Method(wire.method.upper())
    except ValueError:
        raise BadRequest(f"method must be one of {', '.join(m.value for m in Method)}", "method") from None
    params = _decode_raw(wire.params, "params", MAX_PARAMS)
    if method in HTTP_METHODS and method not in QUERY_METHODS and isinstance(params, str) and not params.strip():
        params = None  # the Rust poulpe's clients send "" for a POST without a body: an empty body it is
    meta = _decode_raw(wire.meta, "meta", MAX_META)
    if meta is not None and not isinstance(meta, dict):
        raise BadRequest("meta must be an object", "meta")
    if wire.delay is not None and wire.at is not None:
        raise BadRequest("give delay or at, not both", "at")
    run_at = now + (wire.delay or 0.0)
    if wire.at is not None:
        run_at = max(now, _parse_at(wire.at))
    _CHECKS[method](method, wire.name, params, limits)
    if wire.callback is not None:
        check_url(wire.callback, "callback", limits.allow_hosts)
    job = Job(
        id=wire.id if wire.id is not None else new_id(),
        method=method,
        name=wire.name,
        params=params,
        cc=_parse_cc(wire.cc, limits.workers),
        timeout=wire.timeout,
        retry=_policy(wire.retry, limits.default_retry),
        headers=_check_headers(wire.headers),
        callback=wire.callback,
        meta=meta,
        key=wire.key,
        priority=wire.priority,
        traceparent=valid_traceparent(wire.traceparent),
        status=Status.QUEUED if run_at <= now else Status.SCHEDULED,
        created_at=now,
        run_at=run_at,
    )
    if wire.debounce is not None or wire.unique is not None or wire.deadline is not None:
        apply_windows(job, debounce=wire.debounce, unique=wire.unique, deadline=wire.deadline, now=now)
    return Submission(job=job, wait=wire.wait)


def _check_queue(method: Method, name: str, params: Any, limits: Limits) -> None:
    """QUEUE jobs are run by external workers (external.py), which ask for them by task type: their name."""
    if not is_task_type(name):
        raise BadRequest(f"name of a QUEUE job is its task type: {TYPE_RULE}", "name")


# each method's rules live with its runner: the validator checks what is common to every job, then asks the runner
_CHECKS: dict[Method, Callable[[Method, str, Any, Limits], None]] = {
    **dict.fromkeys(HTTP_METHODS, check_http),
    Method.EXEC: check_exec,
    Method.MAIL_TO: check_mail,
    Method.QUEUE: _check_queue,
}


def _check_headers(headers: dict[str, str] | None) -> dict[str, str] | None:
    for key, value in (headers or {}).items():
        if not _HEADER_NAME_RE.fullmatch(key) or key.lower() in _RESERVED_HEADERS or key.lower().startswith("poulpe-"):
            raise BadRequest(f"header name {key[:64]!r} is not allowed", "headers")
        if len(value) > 8192 or any(c in value for c in "\r\n\0"):
            raise BadRequest(f"header {key} has a value that is too long or holds a line break", "headers")
    return headers


def _parse_cc(cc: str | None, workers: int) -> tuple[int, ...]:
    if not cc or not cc.strip():
        return ()
    found: set[int] = set()
    for part in cc.replace(",", " ").split():
        if not part.isascii() or not part.isdigit() or int(part) >= workers:
            raise BadRequest(f"cc names workers 0 to {workers - 1}; {part[:20]!r} is not one of them", "cc")
        found.add(int(part))
    return tuple(sorted(found))


def _parse_at(at: float | str) -> float:
    return parse_moment(at, "at")


def _policy(retry: RetryIn | None, default: RetryPolicy) -> RetryPolicy | None:
    if retry is None:
        return None
    if retry.intervals is not None and (retry.max is not None or retry.interval is not None or retry.backoff):
        raise BadRequest("give intervals, or max/interval/backoff, not both", "retry.intervals")
    return RetryPolicy(
        max=default.max if retry.max is None else retry.max,
        interval=default.interval if retry.interval is None else retry.interval,
        backoff=retry.backoff or default.backoff,
        max_interval=default.max_interval if retry.max_interval is None else retry.max_interval,
        intervals=tuple(retry.intervals) if retry.intervals is not None else None,
        max_duration=retry.max_duration,
    )


def _decode_raw(raw: msgspec.Raw, field: str, cap: int) -> Any:
    if len(raw) > cap:
        raise BadRequest(f"{field} is larger than {cap // 1024} KiB", field)
    try:
        return msgspec.json.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError, UnicodeDecodeError) as exc:
        raise BadRequest(f"{field} is not valid JSON: {_reason(exc)}", field) from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if isinstance(exc, UnicodeDecodeError):
        return f"bytes that are not UTF-8 at byte {exc.start}"
    return str(exc)[:200]

"""Job JSON → Job. The one validator every intake uses; each error names the field at fault."""

from __future__ import annotations

import functools
import json
import os
import re
import time
from collections.abc import Callable
from typing import Any

import msgspec

from poulpe import chain_refs
from poulpe.bursts import DebounceIn, apply_windows, parse_moment
from poulpe.checks import TYPE_PATTERN as TYPE_PATTERN  # where the schema (openapi*.py) reads it
from poulpe.checks import TYPE_RULE, is_task_type, split_msgspec
from poulpe.checks import Limits as Limits  # what every intake hands the validator
from poulpe.errors import BadRequest
from poulpe.job import HTTP_METHODS, QUERY_METHODS, Job, Method, RetryPolicy, Status
from poulpe.job_in import MAX_BATCH, MAX_CHAIN, MAX_META, MAX_PARAMS, NULL, JobIn, RetryIn
from poulpe.outbound import check_url
from poulpe.runners.exec import check as check_exec
from poulpe.runners.http import check as check_http
from poulpe.runners.mail import check as check_mail
from poulpe.tracing import valid_traceparent

_HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$")
_RESERVED_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})

_JOB_IN = msgspec.json.Decoder(JobIn)  # made once: `msgspec.json.decode(raw, type=JobIn)` looks the type up each call
_FIELD_KEY = re.compile(
    rb'"('
    + b"|".join(
        name.encode()
        for name in {*JobIn.__struct_fields__, *RetryIn.__struct_fields__, *DebounceIn.__struct_fields__, "for"}
    )
    + rb')"'
)


class Submission(msgspec.Struct, gc=False):
    """A valid job, and how long its submitter wants to wait for the result. A struct without the garbage
    collector's tracking: a fifth of a slotted dataclass's cost to make, once per job of a batch."""

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
        ids = BatchIds(len(items))
        for raw in items:
            try:
                slots.append(parse_job(raw, limits, now=now, ids=ids))
            except BadRequest as exc:
                slots.append(exc)
        return slots
    return parse_job(body, limits, now=now)


def parse_job(
    raw: bytes | msgspec.Raw, limits: Limits, *, now: float | None = None, depth: int = 0, ids: BatchIds | None = None
) -> Submission:
    """One job object as JSON bytes → Submission; raises BadRequest naming the field."""
    try:
        wire = _JOB_IN.decode(raw)
    except msgspec.ValidationError as exc:
        field, reason = split_msgspec(str(exc))
        raise BadRequest(reason, field) from None
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as exc:
        raise BadRequest(f"body is not valid JSON: {_reason(exc)}") from None
    _check_unique_keys(bytes(raw))
    return _build(wire, limits, time.time() if now is None else now, depth, ids)


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
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


_VARIANT = {f"{n:x}": "89ab"[n & 3] for n in range(16)}  # a hex digit -> the RFC 4122 variant digit it gives


class BatchIds:
    """The ids of a batch's jobs that give none: random UUID4s like `new_id`'s, made together and handed out in
    ascending order. The batch's rows then reach the id index in key order, and the writer can insert the rows of
    concurrent batches sorted by id without changing any batch's own order (sqlite_rows.py, `in_id_order`): an
    index of random keys costs about half as much CPU to fill in key order (docs/design.md, "Ids")."""

    __slots__ = ("_left", "_size")

    def __init__(self, size: int) -> None:
        self._size = size  # the batch's jobs: at most that many ids are needed
        self._left: list[str] | None = None  # made on the first take, in descending order (taken from the end)

    def take(self) -> str:
        if self._left is None:
            self._left = sorted((new_id() for _ in range(self._size)), reverse=True)
        return self._left.pop()


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


def job_from_object(obj: Any, limits: Limits, *, now: float | None = None, depth: int = 0) -> Submission:
    """The same validation for a job given as Python data (compat routes, cron, Kafka, a chain's children)."""
    return parse_job(msgspec.json.encode(obj), limits, now=now, depth=depth)


def _children(field: str, raw: msgspec.Raw, job_id: str, *, limits: Limits, now: float, depth: int) -> Any:
    parse = functools.partial(job_from_object, limits=limits, now=now)
    return chain_refs.check(_decode_raw(raw, field, MAX_CHAIN), field, job_id, depth, parse)


def _build(wire: JobIn, limits: Limits, now: float, depth: int = 0, ids: BatchIds | None = None) -> Submission:
    method = _METHOD_OF.get(wire.method)
    if method is None:
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
    job_id = wire.id if wire.id is not None else (new_id() if ids is None else ids.take())
    job = Job(
        id=job_id,
        method=method,
        name=wire.name,
        status=Status.QUEUED if run_at <= now else Status.SCHEDULED,
        created_at=now,
        run_at=run_at,
    )
    # The optional fields are set only when given: msgspec matches each keyword against the record's fields, so a
    # Job built from all 16 costs four times one built from these 6, and most jobs give few of the others.
    if params is not None:
        job.params = params
    if wire.cc is not None:
        job.cc = _parse_cc(wire.cc, limits.workers)
    if wire.timeout is not None:
        job.timeout = wire.timeout
    if wire.retry is not None:
        job.retry = _policy(wire.retry, limits.default_retry)
    if wire.headers is not None:
        job.headers = _check_headers(wire.headers)
    if wire.callback is not None:
        job.callback = wire.callback
    if meta is not None:
        job.meta = meta
    if wire.key is not None:
        job.key = wire.key
    if wire.priority:
        job.priority = wire.priority
    if wire.traceparent is not None:
        job.traceparent = valid_traceparent(wire.traceparent)
    if wire.then is not NULL:
        job.then = _children("then", wire.then, job_id, limits=limits, now=now, depth=depth)  # SPEC 10.3
    if wire.on_failure is not NULL:
        job.on_failure = _children("on_failure", wire.on_failure, job_id, limits=limits, now=now, depth=depth)
    if wire.labels is not None:
        job.labels = wire.labels
    if depth:
        job.depth = depth
    if wire.debounce is not None or wire.unique is not None or wire.deadline is not None:
        apply_windows(job, debounce=wire.debounce, unique=wire.unique, deadline=wire.deadline, now=now)
    return Submission(job=job, wait=wire.wait)


_METHOD_OF = {m.value: m for m in Method}  # the usual spelling: a dict lookup, not Method(...) (an enum call)


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
    if raw is NULL:  # the field was absent
        return None
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

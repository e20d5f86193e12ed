"""The job record: one dataclass-like struct with the behaviour that belongs to it."""

from __future__ import annotations

import enum
import random
import time
from typing import Any

import msgspec

HISTORY_KEEP = 20


class Method(enum.StrEnum):
    GET = "GET"
    POST = "POST"
    PUT = "PUT"
    PATCH = "PATCH"
    DELETE = "DELETE"
    EXEC = "EXEC"
    MAIL_TO = "MAIL_TO"
    QUEUE = "QUEUE"


HTTP_METHODS = frozenset({Method.GET, Method.POST, Method.PUT, Method.PATCH, Method.DELETE})
QUERY_METHODS = frozenset({Method.GET, Method.DELETE})


class Status(enum.StrEnum):
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    RETRYING = "retrying"
    DEAD = "dead"
    CANCELLED = "cancelled"


FINAL = frozenset({Status.SUCCEEDED, Status.DEAD, Status.CANCELLED})
WAITING = frozenset({Status.SCHEDULED, Status.QUEUED, Status.RETRYING})
INTERRUPTED = "interrupted: poulpe stopped during the attempt"
DEADLINE_PASSED = "deadline passed before the job started"
LEASE_LOST = "interrupted: the poulpe process running it stopped answering (its lease ran out)"
# The words the Rust poulpe answered with; its clients read them.
WORD_OK, WORD_TIMEOUT, WORD_FAIL = "OK", "Timeout", "Fail"


class RetryPolicy(msgspec.Struct, frozen=True, omit_defaults=True, forbid_unknown_fields=True):
    """How many attempts a job gets and how long it waits between them.

    `intervals` (kingtask's `time_interval`) wins over `max`/`interval`: one retry after each listed interval.
    """

    max: int = 3
    interval: float = 10.0
    backoff: str = "fixed"
    max_interval: float = 3600.0
    intervals: tuple[float, ...] | None = None
    max_duration: float | None = None  # no retry starts later than this many seconds after the first attempt began

    def retry_allowed(self, first_started: float | None, run_at: float) -> bool:
        """False when a retry at `run_at` would begin past the wall-clock budget (`max_duration`)."""
        return self.max_duration is None or first_started is None or run_at <= first_started + self.max_duration

    @property
    def max_attempts(self) -> int:
        return 1 + (len(self.intervals) if self.intervals is not None else self.max)

    def delay_before_retry(self, failures: int, retry_after: float | None = None) -> float:
        """Seconds to wait after the `failures`-th failed attempt (1-based) before the next one."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_interval)
        if self.intervals is not None:
            return float(self.intervals[min(failures, len(self.intervals)) - 1])
        if self.backoff == "exponential":
            ceiling = min(self.interval * 2.0 ** (failures - 1), self.max_interval)
            # equal jitter: half fixed, half random, so jobs failing together do not retry together
            return ceiling / 2 + random.uniform(0, ceiling / 2)
        return self.interval


DEFAULT_RETRY = RetryPolicy()


class Attempt(msgspec.Struct, omit_defaults=True):
    n: int
    started_at: float
    worker: int | None = None
    node: str | None = None
    finished_at: float | None = None
    ok: bool | None = None
    error: str | None = None


class CallbackDelivery(msgspec.Struct):
    """How the POST of a final job's result to its `callback` URL went (poulpe/callbacks.py)."""

    attempts: int = 0
    status_code: int | None = None
    error: str | None = None
    delivered_at: float | None = None


class Job(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One unit of work. User fields first, engine fields after (the saq layout)."""

    id: str
    method: Method
    name: str
    params: Any = None
    cc: tuple[int, ...] = ()
    timeout: float | None = None
    retry: RetryPolicy | None = None
    headers: dict[str, str] | None = None
    callback: str | None = None
    meta: dict[str, Any] | None = None
    source: str = "http"
    # EXEC jobs of kingtask's routes: output on stderr fails the attempt even with exit code 0, kingtask's rule
    fail_on_stderr: bool = False
    key: str | None = None  # jobs sharing a key share its limits and its turn (SPEC 10.1)
    priority: int = 0  # higher starts first
    traceparent: str | None = None  # W3C trace context the job's attempts continue (SPEC 10.6, tracing.py)
    tracestate: str | None = None
    deadline: float | None = None  # unix s: not started by then, the job ends dead without an attempt (windows.py)
    unique: str | None = None  # the unique key; no other job with it is made until `unique_until`
    unique_until: float | None = None
    debounce: str | None = None  # the debounce key; submissions with it replace this job until it starts
    debounce_until: float | None = None  # the latest run time a replacement may set (first submission + max_wait)

    status: Status = Status.QUEUED
    seq: int = 0
    attempts: int = 0
    failures: int = 0
    created_at: float = 0.0
    run_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    result: Any = None
    error: str | None = None
    history: list[Attempt] = msgspec.field(default_factory=list)
    first_started_at: float | None = None  # the first attempt's start: retry.max_duration counts from it
    # QUEUE jobs: the external worker holding the running attempt, and when its lease ends (poulpe/external.py)
    lease_holder: str | None = None
    lease_until: float | None = None
    remark: str | None = None
    callback_delivery: CallbackDelivery | None = None
    held: str | None = None  # why a due job waits (its key's pause or limits): set on the copy a query answers
    debounced: bool = False  # set on the copy an intake answers when a submission replaced this waiting job

    @property
    def final(self) -> bool:
        return self.status in FINAL

    def policy(self, default: RetryPolicy) -> RetryPolicy:
        return self.retry if self.retry is not None else default

    def begin_attempt(self, worker: int | None, node: str | None = None, now: float | None = None) -> Attempt:
        now = time.time() if now is None else now
        self.attempts += 1
        self.status = Status.RUNNING
        self.started_at = now
        if self.first_started_at is None:
            self.first_started_at = now
        attempt = Attempt(n=self.attempts, started_at=now, worker=worker, node=node)
        self.history.append(attempt)
        del self.history[:-HISTORY_KEEP]
        return attempt

    def end_attempt(self, ok: bool, error: str | None, now: float | None = None) -> None:
        now = time.time() if now is None else now
        if self.history and self.history[-1].finished_at is None:
            last = self.history[-1]
            last.finished_at, last.ok, last.error = now, ok, error
        self.error = error

    def interrupt(self, why: str, now: float) -> None:
        """An attempt that never ended (its process stopped): closed as failed, not counted against the retries;
        the job is due again now."""
        self.end_attempt(False, why, now)
        self.status, self.run_at = Status.QUEUED, now

    def to_result(self) -> dict[str, Any]:
        """The result JSON of SPEC 3.1 (with the attempt history; a QUEUE job's lease and remark when it has them,
        and how its callback was delivered when it has a callback)."""
        result = {
            "id": self.id,
            "method": self.method.value,
            "name": self.name,
            "status": self.status.value,
            "attempts": self.attempts,
            "created_at": self.created_at,
            "run_at": self.run_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "result": self.result,
            "error": self.error,
            "meta": self.meta,
            "history": [msgspec.to_builtins(a) for a in self.history],
        }
        if self.lease_holder is not None:
            result["worker"], result["lease_until"] = self.lease_holder, self.lease_until
        if self.remark is not None:
            result["remark"] = self.remark
        if self.callback is not None:
            delivery = self.callback_delivery or CallbackDelivery()
            result["callback_delivery"] = msgspec.to_builtins(delivery)
        if self.key is not None:
            result["key"] = self.key
        if self.priority:
            result["priority"] = self.priority
        if self.held is not None:
            result["held"] = self.held
        if self.traceparent is not None:
            result["traceparent"] = self.traceparent
        if self.deadline is not None:
            result["deadline"] = self.deadline
        if self.unique is not None:
            result["unique"] = {"key": self.unique, "until": self.unique_until}
        if self.debounce is not None:
            result["debounce"] = {"key": self.debounce, "until": self.debounce_until}
        if self.retry is not None and self.retry.max_duration is not None:
            result["retry"] = msgspec.to_builtins(self.retry)
        if self.debounced:
            result["debounced"] = True
        return result


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Job)


def encode_job(job: Job) -> bytes:
    return _encoder.encode(job)


def decode_job(data: bytes | str) -> Job:
    return _decoder.decode(data)

"""The shapes of poulpe's answers, for the document: what Job.to_result, sys_info, the keys and the workers' routes
send. The bodies poulpe reads are described by the structs that parse them (validate.py, api_workers.py, keys.py).

Fields with a default (or UNSET) are the ones an answer may leave out.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from poulpe.job import Attempt, Method, Status
from poulpe.keys import Limit, Period, Rate

Count = Annotated[int, Meta(ge=0)]
Ids = Annotated[list[str], Meta(max_length=1000)]


class CallbackDeliveryOut(msgspec.Struct):
    """With a callback: how its POST went (it never changes the job's status)."""

    attempts: int
    status_code: int | None
    error: str | None
    delivered_at: float | None


class WindowOut(msgspec.Struct):
    """A unique window (`until`: its end) or a debounce window (`until`: the latest run time, or null)."""

    key: str
    until: float | None


class Result(msgspec.Struct, kw_only=True):
    """A job as SPEC 3.1 shows it (Job.to_result)."""

    id: str
    method: Method
    name: str
    status: Status
    attempts: Count
    created_at: float
    run_at: float
    started_at: float | None
    finished_at: float | None
    result: Annotated[Any, Meta(description="The runner's output (SPEC 3.1); `Timeout` when a `wait` ran out.")]
    output: Annotated[Any, Meta(description="With `result: Timeout`: the runner's output so far.")] = None
    error: Annotated[str | None, Meta(description="Why the last attempt failed.")]
    meta: dict[str, Any] | None
    history: Annotated[list[Attempt], Meta(max_length=20)] | UnsetType = UNSET
    duplicate: Annotated[bool, Meta(description="The id was known: this is the existing job.")] | UnsetType = UNSET
    # QUEUE jobs and callbacks (poulpe/external.py, poulpe/callbacks.py)
    worker: Annotated[str, Meta(description="QUEUE: the external worker holding the running attempt.")] | UnsetType = (
        UNSET
    )
    lease_until: Annotated[float | None, Meta(description="QUEUE: when that worker's lease ends.")] = None
    remark: Annotated[str, Meta(description="QUEUE: the remark its worker reported.")] | UnsetType = UNSET
    key: Annotated[str, Meta(description="The job's key (SPEC 10.1).")] | UnsetType = UNSET
    priority: Annotated[int, Meta(description="The job's priority, when not 0.")] | UnsetType = UNSET
    traceparent: (
        Annotated[str, Meta(description="The W3C trace context the job came with (SPEC 10.6).")] | UnsetType
    ) = UNSET
    held: (
        Annotated[
            Literal["paused", "parallelism", "rate"],
            Meta(description="A due job waiting because of its key's pause or limits, or the deployment's pause."),
        ]
        | UnsetType
    ) = UNSET
    callback_delivery: CallbackDeliveryOut | UnsetType = UNSET
    # bursts and windows (SPEC 10.2)
    deadline: Annotated[float, Meta(description="Not started by then, the job ends dead.")] | UnsetType = UNSET
    unique: Annotated[WindowOut, Meta(description="The unique window the job holds.")] | UnsetType = UNSET
    debounce: Annotated[WindowOut, Meta(description="The job's debounce key and run-time ceiling.")] | UnsetType = UNSET
    retry: Annotated[dict[str, Any], Meta(description="The job's retry policy, when it has a max_duration.")] | (
        UnsetType
    ) = UNSET
    debounced: (
        Annotated[bool, Meta(description="This submission replaced the job waiting under its debounce key.")]
        | UnsetType
    ) = UNSET


class Ack(msgspec.Struct):
    """A job accepted: stored, not final yet."""

    result: Literal["OK"]
    id: str
    status: Status
    run_at: float


class Error(msgspec.Struct, kw_only=True):
    """Every error answer of poulpe's own routes."""

    result: Literal["Fail"]
    error: Annotated[str, Meta(description="A sentence saying what is wrong.")]
    field: Annotated[str | None, Meta(description="The field at fault (`retry.max`), or null.")]
    stored: (
        Annotated[
            Literal["unknown"],
            Meta(description="503 only: the store went away after receiving the job; retry with `id` / `ids`."),
        ]
        | UnsetType
    ) = UNSET
    id: Annotated[str, Meta(description="With `stored`: the job's id (generated ones too).")] | UnsetType = UNSET
    ids: (
        Annotated[
            list[str | None],
            Meta(description="With `stored`, for a batch: one id per slot in order (null: the slot was not valid)."),
        ]
        | UnsetType
    ) = UNSET


class DeadJobFields(msgspec.Struct):
    params: Any
    cc: list[int]
    retry: dict[str, Any] | None


class DeadJob(Result, kw_only=True):
    """A dead job: its result, and what it was asked to do."""

    job: DeadJobFields


class JobPage(msgspec.Struct):
    page: Annotated[int, Meta(ge=1)]
    size: Annotated[int, Meta(ge=1)]
    total: int
    jobs: list[Result]


class DeadRow(msgspec.Struct):
    id: str
    day: str
    file: Annotated[str | None, Meta(description="null: the letter is owed")]


class DeadPage(msgspec.Struct):
    page: Annotated[int, Meta(ge=1)]
    size: Annotated[int, Meta(ge=1)]
    total: int
    dead: list[DeadRow]


class Deleted(msgspec.Struct):
    result: Literal["OK"]
    id: str
    deleted: Literal[True]


class KafkaLink(msgspec.Struct):
    state: Literal["starting", "connected", "down", "stopped"]
    error: str | UnsetType = UNSET


class Kafka(msgspec.Struct, kw_only=True):
    """Present when --kafka_servers is set (docs/kafka.md)."""

    consumer: KafkaLink
    producer: KafkaLink
    topic: str
    resp_topic: str
    group: str
    pending: int
    max_pending: int
    paused: bool
    taken: int | UnsetType = UNSET
    malformed: int | UnsetType = UNSET
    results_sent: int | UnsetType = UNSET


class WorkerSlot(msgspec.Struct):
    id: int
    running: str | None
    queue: int


Counts = msgspec.defstruct("Counts", [(status.value, int) for status in Status])  # one count per status


class Today(msgspec.Struct):
    succeeded: int
    failed: int


class SysInfo(msgspec.Struct, kw_only=True):
    kafka: Kafka | UnsetType = UNSET
    version: str
    uptime_s: float
    store: Literal["sqlite", "redis"]
    node: str
    workers: list[WorkerSlot]
    running: Ids
    delayed: Ids
    failed: Ids
    truncated: bool | UnsetType = UNSET
    paused: Annotated[bool, Meta(description="POST /pause: no job starts until POST /resume.")] | UnsetType = UNSET
    counts: Counts  # type: ignore[valid-type]
    today: Today


class HealthDetail(msgspec.Struct):
    kafka: Kafka | UnsetType = UNSET


class Healthy(msgspec.Struct):
    ok: Literal[True]
    detail: HealthDetail | UnsetType = UNSET


class Unhealthy(msgspec.Struct):
    ok: Literal[False]
    draining: bool | UnsetType = UNSET
    writable: Literal[False] | UnsetType = UNSET
    error: str | UnsetType = UNSET


class Document(msgspec.Struct):
    """This document."""

    openapi: Any
    paths: Any


# --- flow control (SPEC 10.1) -----------------------------------------------------------------------------------------
class KeyState(msgspec.Struct, kw_only=True):
    """A key's limits in force, pause, and jobs (poulpe/dispatch/controls.py)."""

    key: str
    parallelism: Annotated[Limit | None, Meta(description="Attempts running at once at most (null: no limit).")]
    rate: Annotated[Rate | None, Meta(description="Attempt starts per `period` at most (null: no limit).")]
    period: Annotated[Period, Meta(description="Seconds of `rate`.")]
    paused: bool
    own: Annotated[bool, Meta(description="The key has limits of its own (else the --key_* defaults).")] | UnsetType = (
        UNSET
    )
    waiting: Annotated[Count, Meta(description="Due jobs waiting for a worker.")]
    running: Annotated[Count, Meta(description="Attempts running now.")]
    started_in_period: Annotated[Count, Meta(description="Attempts started in the last `period` seconds.")]


class KeyPage(msgspec.Struct):
    page: Annotated[int, Meta(ge=1)]
    size: Annotated[int, Meta(ge=1)]
    total: Count
    keys: list[KeyState]


class Paused(msgspec.Struct):
    paused: bool


# --- external workers (SPEC 6) ----------------------------------------------------------------------------------------
class WorkerOut(msgspec.Struct):
    """A worker this process knows (external.py's `to_json`)."""

    type: str
    name: str
    last_beat: float
    jobs: Annotated[list[str], Meta(description="Ids of the jobs it holds a lease on.")]


class WorkerKnown(WorkerOut):
    result: Literal["OK"] | UnsetType = UNSET


class Workers(msgspec.Struct):
    workers: list[WorkerOut]


class Leased(msgspec.Struct, kw_only=True):
    id: str
    type: str
    params: Any
    meta: dict[str, Any] | None = None
    attempt: int
    lease_until: float


class LeasedJobs(msgspec.Struct):
    jobs: list[Leased]


class AlertRaised(msgspec.Struct, kw_only=True):
    """One alert as GET /alerts lists it (alerts.py): the job as it was when the alert was raised."""

    type: Literal["late", "slow", "lease_lost", "dead"]
    id: str
    method: Method
    name: str
    at: Annotated[float, Meta(description="When it was raised, unix time.")]
    status: Status
    attempts: Count
    error: str | None


class AlertDelivery(msgspec.Struct, kw_only=True):
    url: Annotated[bool, Meta(description="Whether --alert_url is set.")]
    delivered: Count
    undelivered: Annotated[int, Meta(ge=0, description="Given up after every retry.")]
    dropped: Annotated[int, Meta(ge=0, description="Dropped: the delivery queue was full.")]
    waiting: Count


class Alerts(msgspec.Struct):
    """Alerts this process raised: counts by type, the latest (newest first), how deliveries went."""

    counts: dict[str, Count]
    recent: Annotated[list[AlertRaised], Meta(max_length=100)]
    delivery: AlertDelivery


# t, done and failed per second, late_p50, late_p99 (None: no job started), queued, running
Point = Annotated[list[float | None], Meta(min_length=7, max_length=7)]


class History(msgspec.Struct):
    """The dashboard charts' history (history.py): `fields` names the columns of every point, oldest point first."""

    fields: list[str]
    seconds: Annotated[list[Point], Meta(max_length=600, description="A point a second, the last 10 minutes.")]
    minutes: Annotated[list[Point], Meta(max_length=360, description="A point a minute, the last 6 hours.")]

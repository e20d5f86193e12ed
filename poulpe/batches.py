"""Batches (SPEC 10.3): up to 10,000 jobs stored all or none, and their completion told exactly once.

Each job of a batch moves the batch's counters in the same store write as its final state; the write that brings
`pending` to 0 makes the completion owed. A teller (in every process) takes an owed completion, holds it a while,
submits its jobs, `<batch>.complete` (`on_complete`, `"$batch"` filled in) and `<batch>.callback` (a POST of the
batch's state to `callback`, retried as any job), then marks it told. Their fixed ids make the completion's jobs
once only, even when a teller stops between submitting and marking, and another takes the completion over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any

import msgspec
from prometheus_client import CollectorRegistry, Counter

from poulpe.batch_record import MAX_JOBS, Batch
from poulpe.checks import split_msgspec
from poulpe.errors import BadRequest, Unavailable
from poulpe.job import QUERY_METHODS, Job, Method
from poulpe.job_in import null_raw
from poulpe.labels import MAX_LABELS, Labels
from poulpe.outbound import check_url
from poulpe.store.base import Store
from poulpe.validate import Limits, job_from_object, new_id, parse_job

log = logging.getLogger("poulpe.jobs")
BATCH_ID = r"^[A-Za-z0-9._:-]{1,100}\Z"  # room for `.complete` and `.callback` within a job id's 128
BATCH = "$batch"
HOLD = 30.0  # how long a teller holds an owed completion before another may take it
SWEEP = 2.0  # how often a process sharing the store looks for completions another one left owed


class BatchIn(msgspec.Struct, forbid_unknown_fields=True):
    """POST /batches."""

    jobs: Annotated[list[msgspec.Raw], msgspec.Meta(description=f"1 to {MAX_JOBS:,} job objects (SPEC 2.1).")]
    id: Annotated[str, msgspec.Meta(pattern=BATCH_ID, description="Generated (UUID4) when absent.")] | None = None
    on_complete: Annotated[
        msgspec.Raw,
        msgspec.Meta(
            description='A job object submitted once every job is final; "$batch" as its params becomes the batch\'s '
            "state. Its id defaults to <batch id>.complete.",
            extra_json_schema={"type": ["object", "null"]},
        ),
    ] = msgspec.field(default_factory=null_raw)
    callback: Annotated[str, msgspec.Meta(max_length=4096, description="Receives the final state by POST.")] | None = (
        None
    )
    labels: Annotated[Labels, msgspec.Meta(description="Given to every job (a job's own labels win).")] | None = None


def parse_batch(body: bytes, limits: Limits, now: float) -> tuple[Batch, list[Job]]:
    """POST /batches' body → the batch and its jobs, every one checked; 400 naming `jobs[i].field` otherwise."""
    try:
        wire = msgspec.json.decode(body, type=BatchIn)
    except msgspec.ValidationError as exc:
        field, reason = split_msgspec(str(exc))
        raise BadRequest(reason, field) from None
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as exc:
        raise BadRequest(f"body is not valid JSON: {str(exc)[:200]}") from None
    if not 1 <= len(wire.jobs) <= MAX_JOBS:
        raise BadRequest(f"a batch holds 1 to {MAX_JOBS:,} jobs, this one has {len(wire.jobs):,}", "jobs")
    batch_id = wire.id or new_id()
    jobs: list[Job] = []
    seen: set[str] = set()
    for i, raw in enumerate(wire.jobs):
        try:
            job = parse_job(raw, limits, now=now).job
        except BadRequest as exc:
            raise BadRequest(exc.message, f"jobs[{i}].{exc.field}" if exc.field else f"jobs[{i}]") from None
        if job.id in seen:
            raise BadRequest(f"job id {job.id} is given twice in the batch", f"jobs[{i}].id")
        seen.add(job.id)
        job.batch = batch_id
        if wire.labels:
            job.labels = {**wire.labels, **(job.labels or {})}
            if len(job.labels) > MAX_LABELS:
                raise BadRequest(f"a job has at most {MAX_LABELS} labels, its own and the batch's", f"jobs[{i}].labels")
        jobs.append(job)
    if wire.callback is not None:
        check_url(wire.callback, "callback", limits.allow_hosts)
    on_complete = _on_complete(wire.on_complete, batch_id, limits, now)
    batch = Batch(id=batch_id, total=len(jobs), pending=len(jobs), created_at=now, on_complete=on_complete,
                  callback=wire.callback, labels=wire.labels)  # fmt: skip
    return batch, jobs


def _on_complete(raw: msgspec.Raw, batch_id: str, limits: Limits, now: float) -> dict[str, Any] | None:
    """The on_complete job object, checked now as it will be submitted (a stand-in for the batch's state)."""
    try:
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise BadRequest(f"on_complete is not valid JSON: {str(exc)[:200]}", "on_complete") from None
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadRequest("on_complete must be a job object", "on_complete")
    try:
        job_from_object(_filled(value, {}, batch_id), limits, now=now)
    except BadRequest as exc:
        raise BadRequest(exc.message, f"on_complete.{exc.field}" if exc.field else "on_complete") from None
    return value


def _filled(on_complete: dict[str, Any], state: dict[str, Any], batch_id: str) -> dict[str, Any]:
    """`"$batch"` as the whole params becomes the state (its JSON text: an EXEC job's one argument)."""
    job = {"id": f"{batch_id}.complete", **on_complete}
    if job.get("params") == BATCH:
        method = str(job.get("method", "")).upper()
        if method in QUERY_METHODS:
            raise BadRequest('"$batch" may stand as the params of POST, PUT, PATCH, EXEC and QUEUE jobs', "params")
        job["params"] = [msgspec.json.encode(state).decode()] if method == Method.EXEC else state
    return job


def completion_jobs(batch: Batch, limits: Limits, now: float) -> list[Job]:
    """The jobs that tell a finished batch: on_complete and the callback's POST (either may be absent)."""
    jobs: list[Job] = []
    state = batch.state()
    wanted: list[dict[str, Any]] = []
    if batch.on_complete is not None:
        wanted.append(_filled(batch.on_complete, state, batch.id))
    if batch.callback is not None:
        callback = {"id": f"{batch.id}.callback", "method": "POST", "name": batch.callback, "params": state}
        wanted.append({**callback, "key": batch.key} if batch.key else callback)
    for obj in wanted:
        try:
            jobs.append(job_from_object(obj, limits, now=now).job)
        except BadRequest as exc:  # checked at intake: only a changed setting gets here
            log.warning("batch %s: job %s not submitted: %s (%s)", batch.id, obj.get("id"), exc.message, exc.field)
    return jobs


class BatchTeller:
    """Tells finished batches: woken when a batch's job becomes final in this process, and (on a shared store)
    every SWEEP seconds for completions another process left owed."""

    def __init__(
        self,
        store: Store,
        submit: Callable[[Sequence[Job]], Awaitable[object]],
        limits: Limits,
        *,
        clock: Callable[[], float],
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.store = store
        self.told = Counter("poulpe_batches_told", "Finished batches whose end was told here", registry=registry)
        self.submit = submit
        self.limits = limits
        self.clock = clock
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="poulpe-batches")

    def poke(self) -> None:
        """A job of a batch became final here (the finish step, a cancel): its batch's end may be owed."""
        self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        every = SWEEP if self.store.shared else None  # alone on its store, this process writes every final state
        while True:
            try:
                for batch_id in await self.store.owed_batches(self.clock(), HOLD):
                    await self.tell(batch_id)
            except Unavailable as exc:
                log.warning("batches: the store is away (%s); tried again later", exc.message)
                every = SWEEP
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(every):
                    await self._wake.wait()
            self._wake.clear()

    async def tell(self, batch_id: str) -> None:
        batch = await self.store.get_batch(batch_id)
        if batch is None:
            return
        jobs = completion_jobs(batch, self.limits, self.clock())
        if jobs:
            await self.submit(jobs)  # a known id is a duplicate: a completion told twice makes its jobs once
        await self.store.batch_announced(batch_id)
        self.told.inc()
        log.info(
            "batch %s done total=%d succeeded=%d dead=%d cancelled=%d",
            batch.id,
            batch.total,
            batch.succeeded,
            batch.dead,
            batch.cancelled,
        )

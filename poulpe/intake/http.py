"""POST /task_in_queue: one job or a batch, stored before the answer, with the Rust poulpe's result words."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.datastructures import Headers
from starlette.types import Receive, Scope, Send

from poulpe.errors import BadRequest, OutcomeUnknown
from poulpe.job import WORD_OK, WORD_TIMEOUT, Job
from poulpe.manager import JobManager
from poulpe.responses import receive_json_body, send_json
from poulpe.tracing import adopt, from_headers
from poulpe.validate import Limits, Submission, parse_body


def accepted(job: Job) -> dict[str, Any]:
    return {"result": WORD_OK, "id": job.id, "status": job.status.value, "run_at": job.run_at}


def duplicate(job: Job) -> dict[str, Any]:
    """A known id or a held unique window (`duplicate: true`), or a debounced submission (`debounced: true`)."""
    return job.to_result() if job.debounced else {**job.to_result(), "duplicate": True}


async def answer_after_wait(manager: JobManager, job: Job, wait: float | None) -> tuple[int, dict[str, Any]]:
    """200 and the result when the job is final in time; 202 with `Timeout` and its state otherwise."""
    if not wait:
        return 202, accepted(job)
    done = await manager.wait(job.id, wait)
    if done is not None and done.final:
        return 200, done.to_result()
    state = (done or job).to_result()
    return 202, {**state, "result": WORD_TIMEOUT, "output": state["result"]}


class TaskInQueue:
    """The route as a plain ASGI app: Starlette's Route calls it straight, without the Request and Response objects
    (and their wrapper) a function endpoint costs each request. Errors are raised as from any route: the app's
    exception handlers answer them, the same as before."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = scope["state"]  # the lifespan's, or the view a token's guard gave this request (auth.py)
        manager: JobManager = state["manager"]
        limits: Limits = state["limits"]
        body = await receive_json_body(scope, receive, state["settings"].max_body)
        parsed = parse_body(body, limits)
        if _has_traceparent(scope):  # W3C trace context: jobs without a traceparent field of their own take it
            slots = [parsed] if isinstance(parsed, Submission) else parsed
            adopt((s.job for s in slots if isinstance(s, Submission)), *from_headers(Headers(scope=scope)))
        if isinstance(parsed, Submission):
            [(job, was_known)] = await manager.submit([parsed.job])
            if was_known:
                await send_json(send, duplicate(job), 200)
                return
            status, answer = await answer_after_wait(manager, job, parsed.wait)
            await send_json(send, answer, status)
            return
        status, answers = await _batch(manager, parsed)
        await send_json(send, answers, status)


task_in_queue = TaskInQueue()


def _has_traceparent(scope: Scope) -> bool:
    for name, _ in scope["headers"]:  # noqa: SIM110 (a plain loop: half the cost of any() over a generator)
        if name == b"traceparent":
            return True
    return False


async def _batch(manager: JobManager, slots: list[Submission | BadRequest]) -> tuple[int, list[Any]]:
    valid = [slot for slot in slots if isinstance(slot, Submission)]
    try:
        stored = iter(await manager.submit([s.job for s in valid]) if valid else [])
    except OutcomeUnknown as exc:  # the ids in the order of the slots: a retry of the batch with them is safe
        ids = [slot.job.id if isinstance(slot, Submission) else None for slot in slots]
        raise OutcomeUnknown(exc.message, ids, batch=True) from None
    waits: list[asyncio.Task[tuple[int, dict[str, Any]]]] = []
    answers: list[Any] = []
    for slot in slots:
        if isinstance(slot, BadRequest):
            answers.append(slot.to_json())
            continue
        job, was_known = next(stored)
        if was_known:
            answers.append(duplicate(job))
        elif slot.wait:
            waits.append(asyncio.create_task(answer_after_wait(manager, job, slot.wait)))
            answers.append(waits[-1])
        else:
            answers.append(accepted(job))
    if waits:
        await asyncio.gather(*waits)
        answers = [a.result()[1] if isinstance(a, asyncio.Task) else a for a in answers]
    return (207 if len(valid) < len(slots) else 202), answers

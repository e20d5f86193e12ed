"""WebSocket /ws_task: text frames carry jobs (one or an array); acks come back in order, results when final.

Frames are parsed here, not by Starlette (its JSON mode closes the socket on bad JSON). A client that goes away
loses nothing: its jobs are stored and run, and their results stay queryable over HTTP. A client that stops reading
costs a bounded outbox (poulpe/intake/outbox.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from poulpe.errors import OutcomeUnknown, PoulpeError
from poulpe.intake.outbox import Outbox
from poulpe.job import Job
from poulpe.manager import JobManager
from poulpe.tracing import adopt, from_headers
from poulpe.validate import Limits, Submission, parse_body

log = logging.getLogger(__name__)
GOING_AWAY = 1001


def _error(exc: PoulpeError) -> dict[str, Any]:
    return {"type": "error", "error": exc.message, "field": exc.field}


class _Session:
    """One socket: the ids submitted on it, and the queue of frames to send (acks, then results)."""

    def __init__(self, websocket: WebSocket, manager: JobManager, limits: Limits) -> None:
        self.websocket = websocket
        self.manager = manager
        self.limits = limits
        # a waiter per job submitted here: it wakes when the job ends, in this process or another sharing the store
        self.mine: dict[str, asyncio.Future[Job | None]] = {}
        self.outbox = Outbox()
        # the upgrade request's W3C trace context, for the jobs without a traceparent field of their own
        self.trace = from_headers(websocket.headers) if "traceparent" in websocket.headers else (None, None)

    def watch(self, job_id: str) -> None:
        if job_id not in self.mine:
            fut = self.manager.events.final(job_id)
            self.mine[job_id] = fut
            fut.add_done_callback(self._on_final)

    def _on_final(self, fut: asyncio.Future[Job | None]) -> None:
        job = None if fut.cancelled() else fut.result()
        if job is not None and self.mine.pop(job.id, None) is not None:
            self.outbox.offer(job.id, {"type": "result", **job.to_result()})

    def forget(self) -> None:
        for job_id, fut in self.mine.items():
            self.manager.events.forget(job_id, fut)
        self.mine.clear()

    async def send_forever(self) -> None:
        while True:
            await self.websocket.send_text(await self.outbox.get())

    async def take(self, text: str) -> None:
        """Validate and submit the jobs of one frame; queue one ack or error per job, in order."""
        try:
            parsed = parse_body(text.encode(), self.limits)
            slots = [parsed] if isinstance(parsed, Submission) else parsed
            valid = [s.job for s in slots if isinstance(s, Submission)]
            adopt(valid, *self.trace)
            stored = iter(await self.manager.submit(valid) if valid else [])
        except OutcomeUnknown as exc:  # one error per job, each with its id: a retry with those ids is safe
            for slot in slots:
                if isinstance(slot, PoulpeError):
                    self.outbox.put(_error(slot))
                else:
                    self.outbox.put({**_error(exc), "stored": "unknown", "id": slot.job.id})
            return
        except PoulpeError as exc:
            self.outbox.put(_error(exc))
            return
        for slot in slots:
            if isinstance(slot, PoulpeError):
                self.outbox.put(_error(slot))
                continue
            job, duplicate = next(stored)
            ack = {"type": "ack", "id": job.id, "status": job.status.value}
            self.outbox.put({**ack, "debounced" if job.debounced else "duplicate": True} if duplicate else ack)
            if job.final:
                self.outbox.offer(job.id, {"type": "result", **job.to_result()})
            else:
                self.watch(job.id)


async def ws_task(websocket: WebSocket) -> None:
    manager: JobManager = websocket.state.manager
    await websocket.accept()
    session = _Session(websocket, manager, websocket.state.limits)
    sender = asyncio.create_task(session.send_forever())
    draining = asyncio.create_task(manager.draining.wait())
    try:
        while True:
            # no new frame while the client has not read what is queued: its sends wait in TCP, not in poulpe
            if session.outbox.full:
                room = asyncio.create_task(session.outbox.room())
                waited, _ = await asyncio.wait({room, draining, sender}, return_when=asyncio.FIRST_COMPLETED)
                if room not in waited:
                    room.cancel()
                    break
            receive = asyncio.create_task(websocket.receive())
            done, _ = await asyncio.wait({receive, draining, sender}, return_when=asyncio.FIRST_COMPLETED)
            if receive not in done:
                receive.cancel()
                break
            message = receive.result()
            if message["type"] == "websocket.disconnect":
                break
            if message.get("text") is not None:
                await session.take(message["text"])
            else:
                session.outbox.put({"type": "error", "error": "send jobs as JSON in text frames", "field": None})
    except WebSocketDisconnect:
        pass
    finally:
        session.forget()
        draining.cancel()
        if sender.done() and not sender.cancelled() and sender.exception() is not None:
            log.debug("websocket send failed: %s", sender.exception())
        sender.cancel()
        with contextlib.suppress(Exception):
            await websocket.close(GOING_AWAY)

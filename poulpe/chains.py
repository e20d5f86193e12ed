"""Chains (SPEC 10.3): a final job's children, built for the store to write with the parent's final state.

The children are made when the finish step has decided the parent's final state and before it stores it: the store
writes both in one transaction (SQLite) or one script (Redis), so no crash leaves a final parent without its
children. Their ids are fixed by the parent's (`<parent>.then.<i>`, `<parent>.fail.<i>` unless given), so writing
them again (a reply lost, a parent whose final state is written twice) never makes a second child.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import msgspec

from poulpe import chain_refs
from poulpe.dispatch.events import Events, JobsQueued
from poulpe.errors import BadRequest
from poulpe.job import Job, Method, Status
from poulpe.validate import Limits, job_from_object

log = logging.getLogger("poulpe.jobs")


class Chains:
    def __init__(self, limits: Limits, *, number: Callable[[], int], clock: Callable[[], float]) -> None:
        self.limits = limits
        self.number = number  # the manager's acceptance numbers
        self.clock = clock

    def children_of(self, job: Job) -> list[Job]:
        """The children a final job makes (`then` when it succeeded, `on_failure` when it is dead; none when it was
        cancelled); their ids go into the parent's `children`."""
        field = "then" if job.status is Status.SUCCEEDED else "on_failure" if job.status is Status.DEAD else None
        items = getattr(job, field) if field is not None else None
        if not items or field is None:
            return []
        result = job.to_result()
        text = msgspec.json.encode(result).decode()
        now = self.clock()
        children: list[Job] = []
        for i, item in enumerate(items):
            where = f"{field}[{i}]"
            filled = chain_refs.fill(item, where, result, text)
            if filled.get("id") is None:  # absent or null: the fixed id, so a second write never makes a second child
                filled = {**filled, "id": chain_refs.default_id(job.id, field, i)}
            try:
                child = job_from_object(filled, self.limits, now=now, depth=job.depth + 1).job
            except BadRequest as exc:  # checked at intake; only a changed setting or an oversized result gets here
                log.warning("job %s: child %s not submitted: %s (%s)", job.id, where, exc.message, exc.field)
                continue
            child.parent, child.seq = job.id, self.number()
            children.append(child)
        job.children = [child.id for child in children]
        return children

    def started(self, stored: Sequence[tuple[Job, bool]], schedule: Callable[[Job], None], events: Events) -> None:
        """Children the store has just written go to the feed (a duplicate id existed already: it is left alone)."""
        new = [child for child, duplicate in stored if not duplicate]
        for child in new:
            log.debug("job %s %s attempt=0 run_at=%.3f parent=%s", child.id, child.status, child.run_at, child.parent)
            if child.method is not Method.QUEUE:
                schedule(child)
        queued = [child for child in new if child.method is Method.QUEUE]
        if queued:
            events.emit(JobsQueued(queued))

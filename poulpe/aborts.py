"""Stopping a cron fire's running attempt (`overlap=replace`, SPEC 10.5): the next fire replaces it.

A cancel asked of a running job ordinarily waits for the attempt's end (SPEC 3.3). A `replace` line must not run
twice at once, so its running fire is stopped: the runners of cron fires run their attempt in a task of its own
that `abort` cancels (an EXEC program's whole process group is killed, an HTTP call is dropped); the attempt ends
as a failure, which the pending cancel turns into `cancelled`. Other jobs run as before, without the extra task.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping

from poulpe.job import Job, Method
from poulpe.runners import Outcome, Runner

REPLACED = "cancelled: the cron line's next fire replaced it (overlap=replace)"


class Aborts:
    def __init__(self) -> None:
        self._running: dict[str, asyncio.Task[Outcome]] = {}

    def wrap(self, runners: Mapping[Method, Runner]) -> dict[Method, Runner]:
        wrapped: dict[Runner, Runner] = {}
        return {method: wrapped.setdefault(runner, _Abortable(runner, self)) for method, runner in runners.items()}

    def abort(self, job_id: str) -> bool:
        """Stop the job's attempt if it runs in this process; False when it does not."""
        task = self._running.get(job_id)
        if task is None or task.done():
            return False
        task.cancel()
        return True


class _Abortable:
    def __init__(self, inner: Runner, aborts: Aborts) -> None:
        self.inner = inner
        self.aborts = aborts

    async def run(self, job: Job, attempt: int, timeout: float) -> Outcome:  # noqa: ASYNC109 (the runner's)
        if not job.id.startswith("cron:"):
            return await self.inner.run(job, attempt, timeout)
        task: asyncio.Task[Outcome] = asyncio.ensure_future(self.inner.run(job, attempt, timeout))
        self.aborts._running[job.id] = task
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled() and not _cancelling():
                return Outcome(ok=False, final=True, error=REPLACED)  # aborted, not the worker shut down
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            raise
        finally:
            self.aborts._running.pop(job.id, None)

    async def close(self) -> None:
        await self.inner.close()


def _cancelling() -> bool:
    """True when the worker's own task is being cancelled (shutdown), as opposed to only the attempt's task."""
    current = asyncio.current_task()
    return current is not None and current.cancelling() > 0

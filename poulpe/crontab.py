"""The cron file at run time: one timer for the next fire, reloads on SIGHUP and on file change.

Each fire becomes an ordinary job (id `cron:<fingerprint>:<fire time>`) submitted through JobManager, so retries,
results and dead letters work as for any job, and processes sharing a store fire each time once (the second
submit of an id is a duplicate). Fires missed while poulpe was down are not replayed: the schedule starts from now.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

from poulpe.cron import CronError, CronLine, load_cron, next_fire
from poulpe.errors import PoulpeError
from poulpe.hangup import off_hangup, on_hangup
from poulpe.manager import JobManager
from poulpe.validate import Limits, job_from_object

log = logging.getLogger(__name__)


def read_checked(path: Path, limits: Limits) -> list[CronLine]:
    """The file's lines, each also passed through the job validator (a MAIL_TO line without --smtp_server, an
    EXEC line naming a program that is not in --exec_dir): a bad line is refused at start, not at its first fire."""
    lines = load_cron(path)
    for line in lines:
        try:
            job_from_object(line.job_fields(time.time() + 86400), limits)
        except PoulpeError as exc:
            raise CronError(f"{path} line {line.line_no}: {exc.message}") from None
    return lines


class Crontab:
    def __init__(
        self,
        path: Path,
        manager: JobManager,
        limits: Limits,
        *,
        tz: ZoneInfo,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.manager = manager
        self.limits = limits
        self.tz = tz
        self.clock = clock
        self.lines: list[CronLine] = []
        self.next: dict[CronLine, float] = {}
        self._reload = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def load(self) -> None:
        """Read the file; raises CronError (with the line number) and keeps the old schedule when it is bad."""
        lines = read_checked(self.path, self.limits)
        now = self.clock()
        self.lines = lines
        self.next = {}
        for line in lines:
            fire = next_fire(line, now, self.tz)
            if fire is not None:
                self.next[line] = fire
        log.info("cron: %d lines from %s", len(lines), self.path)

    def start(self) -> None:
        on_hangup(self._reload.set)  # SIGHUP (shared with the tokens file: poulpe/hangup.py)
        self._tasks = [
            asyncio.create_task(self._fire_forever(), name="poulpe-cron"),
            asyncio.create_task(self._watch_file(), name="poulpe-cron-watch"),
        ]

    async def stop(self) -> None:
        off_hangup(self._reload.set)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _fire_forever(self) -> None:
        while True:
            if self._reload.is_set():
                self._reload.clear()
                try:
                    self.load()
                except CronError as exc:
                    log.error("cron: new file refused, the old schedule stays: %s", exc)
            wait = min(self.next.values(), default=None)
            timeout = None if wait is None else max(0.0, wait - self.clock())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._reload.wait()
                continue
            now = self.clock()
            due = [(line, fire) for line, fire in self.next.items() if fire <= now]
            for line, fire in due:
                following = next_fire(line, max(fire, now), self.tz)
                if following is None:
                    del self.next[line]
                else:
                    self.next[line] = following
            await self._submit(due)

    async def _submit(self, due: list[tuple[CronLine, float]]) -> None:
        jobs = []
        for line, fire in due:
            try:
                jobs.append(job_from_object(line.job_fields(fire), self.limits).job)
            except PoulpeError as exc:
                log.error("cron line %d (%s): %s", line.line_no, line.name, exc.message)
        if not jobs or not self.manager.accepting:
            return
        try:
            for job, duplicate in await self.manager.submit(jobs):
                log.debug("cron fire %s%s", job.id, " (already fired elsewhere)" if duplicate else "")
        except PoulpeError as exc:
            log.error("cron: fire not stored: %s", exc.message)

    async def _watch_file(self) -> None:
        """Reload when the file changes on disk (editors often replace it: watch its directory)."""
        import watchfiles

        target = await asyncio.to_thread(self.path.resolve)
        async for changes in watchfiles.awatch(target.parent, debounce=200, recursive=False):
            if any(Path(changed).name == target.name for _, changed in changes):  # one folder, not recursive
                self._reload.set()
